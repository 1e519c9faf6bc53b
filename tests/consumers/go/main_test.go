package main

import (
	"context"
	"testing"

	gradtau "github.com/gradtau/gradtau/bindings/go"
)

func TestRemoveClass(t *testing.T) {
	if gradtau.ABIVersion() != gradtau.HeaderABIVersion {
		t.Fatalf("library ABI %d, header %d", gradtau.ABIVersion(), gradtau.HeaderABIVersion)
	}
	before, after, rep, err := removeClass(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := check(before, after, rep); err != nil {
		t.Fatal(err)
	}
}
