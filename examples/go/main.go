// A mesh service instance coordinating through concord with redigo.
//
// Two instances of a "checkout" service start against different nodes of a
// concord cluster. Each one:
//
//   - opens a session and keeps it alive from a background goroutine,
//   - registers itself in the service registry, bound to the session,
//   - picks peers round robin (the cluster decides, so picks are exact),
//   - takes a lock with a fencing token and writes under LOCK.GUARD,
//   - rate-limits per user,
//   - pushes and claims jobs from a leased work queue,
//   - reports to a circuit breaker shared by the whole mesh.
//
// It is the Go port of examples/python/mesh_instance.py, step for step.
// Run it against `concord dev` (nodes on 6379-6381 by default); README.md
// in this directory says how to build it offline with Debian's packages:
//
//	go run .
//	CONCORD_NODES=127.0.0.1:7000,127.0.0.1:7001 go run .
//
// It checks what it expects at every step and exits non-zero on a
// surprise, so it doubles as an end-to-end check (tests/dev.rs runs it).
package main

import (
	"fmt"
	"os"
	"reflect"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gomodule/redigo/redis"
)

const service = "checkout"

// fail reports a surprise and exits non-zero, as a failed assert does in
// the Python example.
func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Stderr.Write(debug.Stack())
	os.Exit(1)
}

func check(ok bool, format string, args ...interface{}) {
	if !ok {
		fail(format, args...)
	}
}

// must returns a reply, failing on any error (error replies included).
func must(reply interface{}, err error) interface{} {
	if err != nil {
		fail("%v", err)
	}
	return reply
}

func mustInt(reply interface{}, err error) int64 {
	n, err := redis.Int64(must(reply, err), nil)
	if err != nil {
		fail("expected an integer: %v (%#v)", err, reply)
	}
	return n
}

func mustString(reply interface{}, err error) string {
	s, err := redis.String(must(reply, err), nil)
	if err != nil {
		fail("expected a string: %v (%#v)", err, reply)
	}
	return s
}

func mustValues(reply interface{}, err error) []interface{} {
	v, err := redis.Values(must(reply, err), nil)
	if err != nil {
		fail("expected an array: %v (%#v)", err, reply)
	}
	return v
}

// A pool of connections to one node, as redis-py keeps one per client: the
// keepalive goroutine and the main flow each get a connection of their own.
func connect(address string) *redis.Pool {
	return &redis.Pool{
		MaxIdle: 4,
		Dial: func() (redis.Conn, error) {
			return redis.Dial("tcp", address,
				redis.DialConnectTimeout(5*time.Second),
				// Longer than any WAIT below: a hang is a failure, not a stall.
				redis.DialReadTimeout(30*time.Second),
				redis.DialWriteTimeout(5*time.Second))
		},
	}
}

type Instance struct {
	name    string
	address string
	r       *redis.Pool
	session int64
	stop    chan struct{}
	once    sync.Once
}

func newInstance(name, address, node string) *Instance {
	return &Instance{name: name, address: address, r: connect(node), stop: make(chan struct{})}
}

// do runs one command on a connection of the instance's pool.
func (i *Instance) do(cmd string, args ...interface{}) (interface{}, error) {
	c := i.r.Get()
	defer c.Close()
	return c.Do(cmd, args...)
}

func (i *Instance) start(ttlMs int) {
	i.session = mustInt(i.do("SESSION.CREATE", ttlMs, "NAME", i.name))
	added := mustInt(i.do("REGISTRY.REGISTER", service, i.name, i.address, 0,
		"META", `{"version":"1.4.2"}`, "SESSION", i.session))
	check(added == 1, "REGISTRY.REGISTER: %d", added)
	go i.keepalive(ttlMs)
}

func (i *Instance) keepalive(ttlMs int) {
	ticker := time.NewTicker(time.Duration(ttlMs/3) * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-i.stop:
			return
		case <-ticker.C:
		}
		_, err := i.do("SESSION.KEEPALIVE", i.session)
		if e, ok := err.(redis.Error); ok && strings.HasPrefix(string(e), "NOSESSION") {
			return
		}
		// Any other error (a node restarting, a lost connection): try
		// again at the next tick, as the Python example does.
	}
}

func (i *Instance) shutdown() {
	i.once.Do(func() { close(i.stop) })
	destroyed := mustInt(i.do("SESSION.DESTROY", i.session))
	check(destroyed == 1, "SESSION.DESTROY: %d", destroyed)
}

func main() {
	nodes := "127.0.0.1:6379,127.0.0.1:6380,127.0.0.1:6381"
	if env := os.Getenv("CONCORD_NODES"); env != "" {
		nodes = env
	}
	addrs := strings.Split(nodes, ",")
	a := newInstance("checkout-a", "10.0.0.1:8080", addrs[0])
	b := newInstance("checkout-b", "10.0.0.2:8080", addrs[len(addrs)-1])
	a.start(6000)
	b.start(6000)
	r := a

	// Service discovery: both instances listed; round robin alternates
	// exactly, whichever node each pick goes through.
	listed := mustValues(r.do("REGISTRY.LIST", service))
	check(len(listed) == 2, "REGISTRY.LIST: %v", listed)
	var picks []string
	for _, inst := range []*Instance{a, b, a, b} {
		pick := mustValues(inst.do("REGISTRY.PICK", service, "ROUND_ROBIN"))
		picks = append(picks, mustString(pick[0], nil))
	}
	sorted := append([]string(nil), picks...)
	sort.Strings(sorted)
	check(reflect.DeepEqual(sorted, []string{"checkout-a", "checkout-a", "checkout-b", "checkout-b"}),
		"round robin picks: %q", picks)
	fmt.Printf("round robin picks: %q\n", picks)

	// A lock with a fencing token; the guarded write only lands while the
	// token holds the lock.
	tokenReply := must(a.do("LOCK.ACQUIRE", "inventory", a.name, 5000, "WAIT", 2000))
	token, isInt := tokenReply.(int64)
	check(isInt, "LOCK.ACQUIRE: %#v", tokenReply)
	guarded := mustString(a.do("LOCK.GUARD", "inventory", token, "SET", "stock:sku-1", 41))
	check(guarded == "OK", "LOCK.GUARD: %q", guarded)
	held := must(b.do("LOCK.ACQUIRE", "inventory", b.name, 5000))
	check(held == nil, "LOCK.ACQUIRE of a held lock: %#v", held)
	released := mustInt(a.do("LOCK.RELEASE", "inventory", token))
	check(released == 1, "LOCK.RELEASE: %d", released)
	later := mustInt(b.do("LOCK.ACQUIRE", "inventory", b.name, 5000))
	check(later > token, "tokens: %d then %d", token, later)
	stale, err := a.do("LOCK.GUARD", "inventory", token, "SET", "stock:sku-1", 0)
	if err == nil {
		fail("a stale token wrote: %#v", stale)
	}
	e, isReplyError := err.(redis.Error)
	check(isReplyError && strings.HasPrefix(string(e), "FENCED"), "stale LOCK.GUARD: %v", err)
	stock := mustString(r.do("GET", "stock:sku-1"))
	check(stock == "41", "stock:sku-1 = %q", stock)
	must(b.do("LOCK.RELEASE", "inventory", later))
	fmt.Println("fencing tokens:", token, "then", later)

	// Rate limit per user: 5 per minute across both instances.
	allowed := int64(0)
	for n := 0; n < 4; n++ {
		for _, inst := range []*Instance{a, b} {
			reply := mustValues(inst.do("RATELIMIT.ACQUIRE", "user:42", "FIXED", 5, 60000))
			check(len(reply) == 4, "RATELIMIT.ACQUIRE: %v", reply)
			allowed += mustInt(reply[0], nil)
		}
	}
	check(allowed == 5, "rate limit allowed %d", allowed)
	fmt.Println("rate limit: 5 of 8 allowed")

	// A leased work queue: a pushes, b claims and acks; a stale token
	// cannot ack.
	for n := 0; n < 3; n++ {
		must(a.do("QUEUE.PUSH", "receipts", fmt.Sprintf("order-%d", n)))
	}
	jobs := mustValues(b.do("QUEUE.CLAIM", "receipts", b.name, 10000, "COUNT", 10))
	var payloads []string
	for _, job := range jobs {
		payloads = append(payloads, mustString(mustValues(job, nil)[1], nil))
	}
	check(reflect.DeepEqual(payloads, []string{"order-0", "order-1", "order-2"}), "QUEUE.CLAIM: %q", payloads)
	for _, job := range jobs {
		fields := mustValues(job, nil)
		check(len(fields) == 4, "job: %v", fields)
		id, attempt, claim := mustInt(fields[0], nil), mustInt(fields[2], nil), mustInt(fields[3], nil)
		check(attempt == 1, "attempt %d", attempt)
		acked := mustInt(b.do("QUEUE.ACK", "receipts", id, claim))
		check(acked == 1, "QUEUE.ACK: %d", acked)
		acked = mustInt(b.do("QUEUE.ACK", "receipts", id, claim))
		check(acked == 0, "QUEUE.ACK again: %d", acked)
	}
	stats := mustValues(r.do("QUEUE.STATS", "receipts"))
	var shown []string
	for n := 0; n+1 < len(stats); n += 2 {
		shown = append(shown, fmt.Sprintf("%s: %d", mustString(stats[n], nil), mustInt(stats[n+1], nil)))
	}
	fmt.Printf("queue stats: {%s}\n", strings.Join(shown, ", "))

	// One circuit breaker for the mesh: failures from both instances add up.
	must(r.do("BREAKER.CONFIG", "payments", "FAILURES", 3, "WINDOW", 10000, "COOLDOWN", 60000))
	for _, inst := range []*Instance{a, b, a} {
		allow := mustValues(inst.do("BREAKER.ALLOW", "payments"))
		check(mustInt(allow[0], nil) == 1, "BREAKER.ALLOW: %v", allow)
		must(inst.do("BREAKER.RECORD", "payments", "FAILURE"))
	}
	allow := mustValues(b.do("BREAKER.ALLOW", "payments"))
	check(len(allow) == 2, "BREAKER.ALLOW: %v", allow)
	state := mustString(allow[1], nil)
	check(mustInt(allow[0], nil) == 0 && state == "OPEN", "BREAKER.ALLOW: %v %q", allow[0], state)
	fmt.Println("breaker:", state)

	// An instance that leaves takes its registration with it.
	b.shutdown()
	listed = mustValues(r.do("REGISTRY.LIST", service))
	check(len(listed) == 1, "REGISTRY.LIST after b left: %v", listed)
	a.shutdown()
	fmt.Println("ok")
}
