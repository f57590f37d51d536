package greet

func Hello() string { return "hello from a vendored module" }
