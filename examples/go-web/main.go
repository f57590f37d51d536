// A Go web app with one vendored module (vendor/, as `go mod vendor` writes it): builds
// offline. `robot once` prints the greeting instead of serving it.
package main

import (
	"fmt"
	"net/http"
	"os"

	"example.com/greet"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "once" {
		fmt.Println(greet.Hello())
		return
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, greet.Hello())
	})
	if err := http.ListenAndServe("127.0.0.1:"+os.Getenv("PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
