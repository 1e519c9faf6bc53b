module github.com/gradtau/gradtau-go

go 1.21
