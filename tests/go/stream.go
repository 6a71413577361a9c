// A Go callback subscriber and a Go streaming subscriber on one topic of our
// broker: the callback is a net/http server registered with POST /sub, the
// stream a GET /sub with Accept: text/event-stream read with Go's net/http
// client. Both must get every message published, in order, the same ones.
// Run by tests/go_interop.rs; prints one line starting "ok" when they did.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

type fromBroker struct {
	Data  string `json:"data"`
	Topic string `json:"Topic"`
}

func fail(format string, args ...interface{}) {
	fmt.Printf("FAIL "+format+"\n", args...)
	os.Exit(1)
}

func post(url string, body []byte) int {
	client := http.Client{Timeout: 2 * time.Second}
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		fail("POST %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func main() {
	broker := flag.String("a", "127.0.0.1:9999", "broker address")
	count := flag.Int("m", 500, "messages to publish")
	flag.Parse()
	topic := "go/both"

	var mu sync.Mutex
	var callback, stream []string
	done := make(chan struct{}, 2)
	note := func(list *[]string, data string) {
		mu.Lock()
		*list = append(*list, data)
		if len(*list) == *count {
			done <- struct{}{}
		}
		mu.Unlock()
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/msg", func(w http.ResponseWriter, r *http.Request) {
		var m fromBroker
		if err := json.NewDecoder(r.Body).Decode(&m); err != nil || m.Topic != topic {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		note(&callback, m.Data)
		w.WriteHeader(http.StatusAccepted)
	})
	mux.HandleFunc("/hb", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
	})
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listen: %v", err)
	}
	go http.Serve(listener, mux)
	port := listener.Addr().(*net.TCPAddr).Port
	sub := fmt.Sprintf(`{"qos":0,"port":"%d"}`, port)
	if status := post(fmt.Sprintf("http://%s/sub/%s", *broker, topic), []byte(sub)); status != 202 {
		fail("subscribe: status %d", status)
	}

	req, _ := http.NewRequest("GET", fmt.Sprintf("http://%s/sub/%s", *broker, topic), nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fail("stream: %v", err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		fail("stream: status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	go func() {
		lines := bufio.NewScanner(resp.Body)
		lines.Buffer(make([]byte, 64*1024), 1024*1024)
		for lines.Scan() {
			line := lines.Text()
			if !strings.HasPrefix(line, "data: ") {
				continue
			}
			var m fromBroker
			if err := json.Unmarshal([]byte(line[len("data: "):]), &m); err != nil || m.Topic != topic {
				fail("stream event %q: %v", line, err)
			}
			note(&stream, m.Data)
		}
	}()

	for i := 0; i < *count; i++ {
		body, _ := json.Marshal(map[string]interface{}{"data": fmt.Sprintf("<%d> ü & \"go\"\n", i), "qos": 0})
		if status := post(fmt.Sprintf("http://%s/pub/%s", *broker, topic), body); status != 202 {
			fail("publish %d: status %d", i, status)
		}
	}
	for got := 0; got < 2; got++ {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			mu.Lock()
			fail("callback got %d, stream got %d of %d", len(callback), len(stream), *count)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 0; i < *count; i++ {
		want := fmt.Sprintf("<%d> ü & \"go\"\n", i)
		if callback[i] != want || stream[i] != want {
			fail("message %d: callback %q, stream %q, want %q", i, callback[i], stream[i], want)
		}
	}
	fmt.Printf("ok callback=%d stream=%d, the same messages in order\n", len(callback), len(stream))
}
