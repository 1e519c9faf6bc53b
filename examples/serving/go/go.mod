module example.com/gradtau-serving

go 1.22

require github.com/gradtau/gradtau-go v0.0.0-00010101000000-000000000000

// The bindings of this checkout; a service outside the repository requires a released
// version instead (or points the replace at its own copy).
replace github.com/gradtau/gradtau-go => ../../../bindings/go
