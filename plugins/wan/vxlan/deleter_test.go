package vxlan

import (
	"fmt"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
)

// TestDeleteDevicesTogether deletes eight bridges from eight goroutines at once: all are
// gone when each call returns, in fewer requests than devices, and a device already gone
// is no error.
func TestDeleteDevicesTogether(t *testing.T) {
	const count = 8
	n := newTestNet(t, "site")
	p := newPlugin(t)
	c, err := p.conn(n.sites[0].NS)
	if err != nil {
		t.Fatal(err)
	}
	devs := make([]netlink.Link, count)
	for i := range devs {
		name := fmt.Sprintf("br-del%d", i)
		n.bridge(0, name)
		if devs[i], err = c.h.LinkByName(name); err != nil {
			t.Fatal(err)
		}
	}
	errs := make([]error, count)
	var wg sync.WaitGroup
	for i, l := range devs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.deleteDevices(l)
			if _, err := c.h.LinkByName(l.Attrs().Name); !isNotFound(err) {
				errs[i] = fmt.Errorf("%s still there after its delete returned (%v)", l.Attrs().Name, err)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	c.del.mu.Lock()
	requests := c.del.requests
	c.del.mu.Unlock()
	t.Logf("%d devices deleted in %d requests", count, requests)
	if requests < 1 || requests >= count {
		t.Errorf("%d delete requests for %d devices deleted at once; want them batched", requests, count)
	}
	if err := c.deleteDevices(devs[0]); err != nil {
		t.Errorf("deleting a device already gone: %v", err)
	}
	n.assertPristine()
}
