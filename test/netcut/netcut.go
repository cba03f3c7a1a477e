// Package netcut stands for a network partition in tests: a TCP proxy on
// loopback to a server (a kube-apiserver) that the test can cut, closing
// the listener and every connection through it at once.
package netcut

import (
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
)

// Proxy forwards TCP connections to its target until Cut.
type Proxy struct {
	l      net.Listener
	mu     sync.Mutex
	cs     []net.Conn
	closed bool
	wg     sync.WaitGroup
}

// New proxies to the host of target (a URL such as a rest.Config's Host,
// or host:port). It is cut and drained when the test ends.
func New(t testing.TB, target string) *Proxy {
	t.Helper()
	host := target
	if u, err := url.Parse(target); err == nil && u.Host != "" {
		host = u.Host
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{l: l}
	p.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", host)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.cs = append(p.cs, c, up)
			if p.closed {
				c.Close()
				up.Close()
			}
			p.mu.Unlock()
			p.wg.Go(func() { _, _ = io.Copy(up, c); up.Close() })
			p.wg.Go(func() { _, _ = io.Copy(c, up); c.Close() })
		}
	})
	t.Cleanup(func() {
		p.Cut()
		p.wg.Wait()
	})
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.l.Addr().String() }

// Cut closes the listener and every connection: clients see the server
// vanish mid-request.
func (p *Proxy) Cut() {
	if err := p.l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		panic(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.cs {
		c.Close()
	}
}
