module example.com/gradtau-consumer

go 1.21
