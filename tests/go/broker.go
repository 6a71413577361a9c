// A broker built on Go's net/http, as the Go Message-Broker's server is:
// POST /pub/{topic}, /sub/{topic} and /hb per PROTOCOL.md version 1, each
// message delivered with Go's http.Client as POST /msg {"data","Topic"}.
// It is our reading of the protocol, not the original's code; it lets
// tests/go_interop.rs check our Rust client against Go's HTTP server and
// client. Prints "listening on ADDR" once ready.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

type pubMessage struct {
	Data string `json:"data"`
	QoS  int    `json:"qos"`
}

type subMessage struct {
	QoS  int    `json:"qos"`
	Port string `json:"port"`
}

type toSubscriber struct {
	Data  string `json:"data"`
	Topic string `json:"Topic"`
}

var (
	mu     sync.Mutex
	topics = map[string][]string{} // topic -> "ip:port"
	client = http.Client{Timeout: 2 * time.Second}
)

func peerIP(r *http.Request) string {
	host, _, _ := net.SplitHostPort(r.RemoteAddr)
	return host
}

func deliver(endpoint, path string, body []byte) {
	resp, err := client.Post("http://"+endpoint+path, "application/json", bytes.NewReader(body))
	if err == nil {
		resp.Body.Close()
	}
}

func main() {
	port := flag.Int("p", 9999, "port")
	flag.Parse()

	http.HandleFunc("/pub/", func(w http.ResponseWriter, r *http.Request) {
		var m pubMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		topic := strings.TrimPrefix(r.URL.Path, "/pub/")
		body, _ := json.Marshal(toSubscriber{Data: m.Data, Topic: topic})
		mu.Lock()
		endpoints := append([]string(nil), topics[topic]...)
		mu.Unlock()
		for _, e := range endpoints {
			deliver(e, "/msg", body)
		}
		w.WriteHeader(http.StatusAccepted)
	})
	http.HandleFunc("/sub/", func(w http.ResponseWriter, r *http.Request) {
		var m subMessage
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.Port == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		topic := strings.TrimPrefix(r.URL.Path, "/sub/")
		endpoint := net.JoinHostPort(peerIP(r), m.Port)
		mu.Lock()
		found := false
		for _, e := range topics[topic] {
			found = found || e == endpoint
		}
		if !found {
			topics[topic] = append(topics[topic], endpoint)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	http.HandleFunc("/hb", func(w http.ResponseWriter, r *http.Request) {
		ip := peerIP(r)
		seen := map[string]bool{}
		mu.Lock()
		for _, endpoints := range topics {
			for _, e := range endpoints {
				if host, _, _ := net.SplitHostPort(e); host == ip {
					seen[e] = true
				}
			}
		}
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		for e := range seen {
			go deliver(e, "/hb", nil)
		}
	})
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Printf("listening on %s\n", listener.Addr())
	http.Serve(listener, nil)
}
