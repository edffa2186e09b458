package xenvim

import (
	"encoding/xml"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"libvirt.org/go/libvirt"
)

// Resizing the memory of a guest with a virtio-mem device (memory_hotplug virtio-mem):
// the guest booted with its own size (its NUMA node's memory); growing past it plugs
// device memory in, shrinking unplugs it, and below the boot size the balloon takes
// the rest, as it does for guests without the device.

// hotplugXML is what a resize reads of a domain's definition.
type hotplugXML struct {
	Memory sizeXML `xml:"memory"`
	Cells  []struct {
		Memory uint64 `xml:"memory,attr"`
		Unit   string `xml:"unit,attr"`
	} `xml:"cpu>numa>cell"`
	Mems []struct {
		Model string `xml:"model,attr"`
		Inner string `xml:",innerxml"`
		Alias struct {
			Name string `xml:"name,attr"`
		} `xml:"alias"`
		Target struct {
			Size    sizeXML `xml:"size"`
			Current sizeXML `xml:"current"`
		} `xml:"target"`
	} `xml:"devices>memory"`
}

// virtioMemState is a domain's virtio-mem device, as one of its definitions has it.
type virtioMemState struct {
	bootMB, sizeMB, totalMB, currentMB int64
	// device is the device's element, for virDomainUpdateDeviceFlags.
	device string
}

// readVirtioMem finds the plugin's virtio-mem device in a domain's XML; ok is false when
// the domain has none (a Xen guest, a balloon guest, one defined before the device).
func readVirtioMem(desc string) (virtioMemState, bool, error) {
	var x hotplugXML
	if err := xml.Unmarshal([]byte(desc), &x); err != nil {
		return virtioMemState{}, false, fmt.Errorf("parse domain XML: %w", err)
	}
	for _, m := range x.Mems {
		if m.Model != "virtio-mem" || m.Alias.Name != virtioMemAlias {
			continue
		}
		var boot int64
		for _, c := range x.Cells {
			boot += sizeXML{Unit: c.Unit, Value: c.Memory}.mebibytes()
		}
		if boot <= 0 {
			return virtioMemState{}, false, fmt.Errorf("virtio-mem device %s: the domain has no NUMA node with memory, expected one", virtioMemAlias)
		}
		return virtioMemState{bootMB: boot, sizeMB: m.Target.Size.mebibytes(), totalMB: x.Memory.mebibytes(),
			currentMB: m.Target.Current.mebibytes(),
			device:    `<memory model='virtio-mem'>` + m.Inner + `</memory>`}, true, nil
	}
	return virtioMemState{}, false, nil
}

var requestedRE = regexp.MustCompile(`<requested[^>]*>[0-9]+</requested>`)

// withRequested returns the device's element asking for mb plugged in.
func (v virtioMemState) withRequested(mb int64) (string, error) {
	if !requestedRE.MatchString(v.device) {
		return "", fmt.Errorf("virtio-mem device %s: no <requested> element in %q", virtioMemAlias, v.device)
	}
	return requestedRE.ReplaceAllLiteralString(v.device, "<requested unit='KiB'>"+strconv.FormatInt(mb<<10, 10)+"</requested>"), nil
}

// plugFor is how much device memory a guest of memMB needs plugged in.
func (v virtioMemState) plugFor(memMB int64) int64 {
	return min(max(roundUp(memMB-v.bootMB, virtioMemBlockMiB), 0), v.sizeMB)
}

// unplugWait bounds the wait for a guest to unplug its device memory before its balloon
// takes it below its boot size.
const unplugWait = 30 * time.Second

// resizeVirtioMem sets the memory of a domain with a virtio-mem device from prevMB to
// memMB, in its persistent definition and, when live, in the running guest. ok is false
// when the domain has no such device (the caller balloons).
//
// libvirt's balloon reaches at most the boot size (it leaves virtio-mem memory to the
// device), and QEMU's balloon target is absolute, against the memory the guest has when
// it is set: so the balloon is only moved while nothing is plugged in, and a node's
// size is its balloon (at most the boot size) plus its plugged memory.
func resizeVirtioMem(d *libvirt.Domain, prevMB, memMB int64, live bool) (ok bool, err error) {
	desc, err := d.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE)
	if err != nil {
		return false, fmt.Errorf("read definition: %w", err)
	}
	cfg, ok, err := readVirtioMem(desc)
	if err != nil || !ok {
		return false, err
	}
	balloon := min(memMB, cfg.bootMB)
	dev, err := cfg.withRequested(cfg.plugFor(memMB))
	if err != nil {
		return true, err
	}
	if err := d.UpdateDeviceFlags(dev, libvirt.DOMAIN_DEVICE_MODIFY_CONFIG); err != nil {
		return true, fmt.Errorf("virtio-mem requested size (config): %w", err)
	}
	if live {
		if err := resizeLiveVirtioMem(d, prevMB, memMB); err != nil {
			return true, err
		}
	}
	if err := d.SetMemoryFlags(uint64(balloon)<<10, libvirt.DOMAIN_MEM_CONFIG); err != nil {
		return true, fmt.Errorf("memory (config balloon %d MB): %w", balloon, err)
	}
	return true, nil
}

func resizeLiveVirtioMem(d *libvirt.Domain, prevMB, memMB int64) error {
	desc, err := d.GetXMLDesc(0)
	if err != nil {
		return fmt.Errorf("read live definition: %w", err)
	}
	cur, ok, err := readVirtioMem(desc)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("virtio-mem device %s: in the definition but not in the running domain", virtioMemAlias)
	}
	if prevMB < cur.bootMB && memMB > prevMB {
		// Empty the balloon first, while nothing is plugged in.
		if err := d.SetMemoryFlags(uint64(min(memMB, cur.bootMB))<<10, libvirt.DOMAIN_MEM_LIVE); err != nil {
			return fmt.Errorf("memory (live balloon): %w", err)
		}
	}
	dev, err := cur.withRequested(cur.plugFor(memMB))
	if err != nil {
		return err
	}
	if err := d.UpdateDeviceFlags(dev, libvirt.DOMAIN_DEVICE_MODIFY_LIVE); err != nil {
		return fmt.Errorf("virtio-mem requested size (live): %w", err)
	}
	if memMB >= cur.bootMB || memMB >= prevMB {
		return nil
	}
	// Below the boot size: once the guest has unplugged the device's memory, or the
	// balloon would take it a second time.
	for deadline := time.Now().Add(unplugWait); cur.currentMB > 0; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("virtio-mem: the guest still has %d MB plugged in after %s, expected none before ballooning to %d MB",
				cur.currentMB, unplugWait, memMB)
		}
		if desc, err = d.GetXMLDesc(0); err != nil {
			return fmt.Errorf("read live definition: %w", err)
		}
		if cur, _, err = readVirtioMem(desc); err != nil {
			return err
		}
	}
	if err := d.SetMemoryFlags(uint64(memMB)<<10, libvirt.DOMAIN_MEM_LIVE); err != nil {
		return fmt.Errorf("memory (live balloon): %w", err)
	}
	return nil
}
