module example.com/gradtau-serving

go 1.22

require github.com/gradtau/gradtau/bindings/go v0.1.0

// The bindings of this checkout; a service outside the repository requires a released
// version instead (or points the replace at its own copy).
replace github.com/gradtau/gradtau/bindings/go => ../../../bindings/go
