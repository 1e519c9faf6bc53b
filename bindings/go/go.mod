module github.com/gradtau/gradtau/bindings/go

go 1.21
