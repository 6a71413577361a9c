// A Go peer built the way the Go Message-Broker's client package is: Go's
// net/http client (500 ms timeout, shared keep-alive transport) to publish,
// subscribe and heartbeat, and Go's net/http server for the broker's
// POST /msg and POST /hb callbacks. Run by tests/go_interop.rs against our
// broker; prints one line and exits 0 when every check passed.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

type subMessage struct {
	QoS  int    `json:"qos"`
	Port string `json:"port"`
}

type pubMessage struct {
	Data string `json:"data"`
	QoS  int    `json:"qos"`
}

type fromBroker struct {
	Data  string `json:"data"`
	Topic string `json:"Topic"`
}

func post(url string, body io.Reader) (int, error) {
	client := http.Client{Timeout: 500 * time.Millisecond}
	req, err := http.NewRequest("POST", url, body)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	broker := flag.String("a", "127.0.0.1:9999", "broker address")
	count := flag.Int("m", 2000, "messages to publish")
	flag.Parse()

	var mu sync.Mutex
	var received []fromBroker
	heartbeats := make(chan struct{}, 16)
	all := make(chan struct{})

	mux := http.NewServeMux()
	mux.HandleFunc("/msg", func(w http.ResponseWriter, r *http.Request) {
		var m fromBroker
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		received = append(received, m)
		if len(received) == *count {
			close(all)
		}
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("/hb", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		heartbeats <- struct{}{}
	})
	listener, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		fail("listen: %v", err)
	}
	go http.Serve(listener, mux)
	port := listener.Addr().(*net.TCPAddr).Port

	topic := "go/interop"
	sub, _ := json.Marshal(subMessage{QoS: 0, Port: fmt.Sprintf("%d", port)})
	if status, err := post(fmt.Sprintf("http://%s/sub/%s", *broker, topic), bytes.NewBuffer(sub)); err != nil || status != 202 {
		fail("subscribe: status %d, %v", status, err)
	}
	start := time.Now()
	for i := 0; i < *count; i++ {
		pub, _ := json.Marshal(pubMessage{Data: fmt.Sprintf("<%d> & \"go\"", i), QoS: 0})
		if status, err := post(fmt.Sprintf("http://%s/pub/%s", *broker, topic), bytes.NewBuffer(pub)); err != nil || status != 202 {
			fail("publish %d: status %d, %v", i, status, err)
		}
	}
	select {
	case <-all:
	case <-time.After(10 * time.Second):
		mu.Lock()
		fail("received %d of %d messages", len(received), *count)
	}
	elapsed := time.Since(start)
	mu.Lock()
	for i, m := range received {
		want := fmt.Sprintf("<%d> & \"go\"", i)
		if m.Data != want || m.Topic != topic {
			fail("message %d: got %+v, want data %q topic %q", i, m, want, topic)
		}
	}
	mu.Unlock()

	// A Go client's heartbeat carries no body; the broker answers on /hb.
	if status, err := post(fmt.Sprintf("http://%s/hb", *broker), nil); err != nil || status != 202 {
		fail("heartbeat: status %d, %v", status, err)
	}
	select {
	case <-heartbeats:
	case <-time.After(5 * time.Second):
		fail("no heartbeat from the broker")
	}

	// A bad body gets a 4xx, which the Go client reports as an error.
	if status, err := post(fmt.Sprintf("http://%s/pub/%s", *broker, topic), bytes.NewBufferString("{")); err != nil || status != 400 {
		fail("bad publish: status %d, %v", status, err)
	}
	fmt.Printf("ok sent=%d received=%d in order, heartbeat answered, %.0f msg/s\n",
		*count, len(received), float64(*count)/elapsed.Seconds())
}
