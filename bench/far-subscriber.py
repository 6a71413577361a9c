#!/usr/bin/env python3
"""Delivery to a subscriber that is 1 ms away (it answers each read 1 ms
late, as across a network), where the broker's overlap of batches matters;
loopback alone hides it on a small machine. Starts BROKER (a broker binary)
on a free port, subscribes a Python endpoint, publishes 20,000 messages
pipelined 64 at a time, prints deliveries/s.

Usage: bench/far-subscriber.py BROKER [DELAY_MS]
"""
import socket, sys, threading, time
broker_bin = sys.argv[1]; N = 20000; DELAY = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.001
import subprocess
p = subprocess.Popen([broker_bin, "--bind", "127.0.0.1", "-p", "0"], stderr=subprocess.PIPE, text=True)
line = ""
while "listening on" not in line:
    line = p.stderr.readline()
port = int(line.strip().split("listening on ")[1].split()[0].split(":")[1])
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(8); sport = lst.getsockname()[1]
got = [0]; done = threading.Event()
ANS = b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n"
def sub():
    while not done.is_set():
        c, _ = lst.accept()
        buf = b""
        while True:
            d = c.recv(1 << 20)
            if not d: break
            buf += d
            n = 0
            while True:
                i = buf.find(b"\r\n\r\n")
                if i < 0: break
                head = buf[:i].decode()
                cl = 0
                for l in head.split("\r\n"):
                    if l.lower().startswith("content-length:"): cl = int(l.split(":")[1])
                if len(buf) < i + 4 + cl: break
                buf = buf[i + 4 + cl:]; n += 1
            if n:
                time.sleep(DELAY)  # a subscriber 1 ms away
                c.sendall(ANS * n); got[0] += n
                if got[0] >= N: done.set()
threading.Thread(target=sub, daemon=True).start()
s = socket.create_connection(("127.0.0.1", port))
body = '{"qos":0,"port":"%d"}' % sport
s.sendall(("POST /sub/t HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)).encode()); s.recv(1000)
msg = b'{"data":"' + b"x" * 64 + b'"}'
req = b"POST /pub/t HTTP/1.1\r\nHost: b\r\nContent-Length: %d\r\n\r\n" % len(msg) + msg
t0 = time.time()
def reader():
    r = 0; buf = b""
    while r < N:
        d = s.recv(1 << 20); r += d.count(b"202 Accepted")
threading.Thread(target=reader, daemon=True).start()
for i in range(0, N, 64):
    s.sendall(req * 64)
done.wait(60)
dt = time.time() - t0
print("%s: %d delivered in %.2f s = %.0f/s" % (broker_bin, got[0], dt, got[0] / dt))
p.kill()
