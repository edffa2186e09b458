// Package seed is the NoCloud seed of a node: the cloud-init files (meta-data, user-data,
// network-config) that tell a guest at first boot its name, who may log in, its SSH host
// key and its addresses. The plugin writes them (see [Seed.Files]) onto a volume labelled
// "cidata", which a standard Debian or Ubuntu cloud image reads with cloud-init, and the
// project's own small guest reads with [Parse].
//
// Only the subset of cloud-init's formats that the plugin writes is read back: meta-data's
// instance-id and local-hostname; user-data's hostname, ssh_authorized_keys and ssh_keys
// (ed25519); network-config version 2 ethernets with match.macaddress, set-name, addresses,
// gateway4/gateway6 and routes.
package seed

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// Label is the volume label cloud-init's NoCloud data source looks for.
const Label = "cidata"

// File names on the seed volume.
const (
	MetaData      = "meta-data"
	UserData      = "user-data"
	NetworkConfig = "network-config"
)

// Seed is what a node is told at first boot.
type Seed struct {
	// InstanceID changes when the node is a new instance (cloud-init reruns its
	// first-boot modules).
	InstanceID string
	// Hostname is the node's host name.
	Hostname string
	// AuthorizedKeys are authorized_keys lines for the login user (root).
	AuthorizedKeys []string
	// HostKey is the node's ed25519 SSH host key, private part in OpenSSH PEM form;
	// HostKeyPublic its authorized_keys line. Empty: the guest makes its own.
	HostKey       string
	HostKeyPublic string
	// Interfaces are the node's NICs and their static addresses.
	Interfaces []Interface
}

// Interface is one NIC's configuration.
type Interface struct {
	// Name is the name the guest gives the NIC (set-name), e.g. eth0.
	Name string
	// MAC identifies the NIC (match.macaddress), lower case.
	MAC string
	// Addresses are CIDR addresses, e.g. 10.10.1.2/16.
	Addresses []string
	// Gateway is the default route's next hop, or empty.
	Gateway string
	// Routes are extra routes through this NIC.
	Routes []Route
}

// Route is a route: to a prefix, through a gateway (empty: on-link).
type Route struct {
	To  string `yaml:"to"`
	Via string `yaml:"via,omitempty"`
}

type metaDoc struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname,omitempty"`
}

type userDoc struct {
	Hostname          string   `yaml:"hostname,omitempty"`
	DisableRoot       *bool    `yaml:"disable_root,omitempty"`
	SSHPwauth         *bool    `yaml:"ssh_pwauth,omitempty"`
	SSHDeleteKeys     *bool    `yaml:"ssh_deletekeys,omitempty"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
	SSHKeys           sshKeys  `yaml:"ssh_keys,omitempty"`
}

type sshKeys struct {
	Ed25519Private string `yaml:"ed25519_private,omitempty"`
	Ed25519Public  string `yaml:"ed25519_public,omitempty"`
}

type netDoc struct {
	Version   int                 `yaml:"version"`
	Ethernets map[string]ethernet `yaml:"ethernets,omitempty"`
}

type ethernet struct {
	Match     *match   `yaml:"match,omitempty"`
	SetName   string   `yaml:"set-name,omitempty"`
	Addresses []string `yaml:"addresses,omitempty"`
	Gateway4  string   `yaml:"gateway4,omitempty"`
	Gateway6  string   `yaml:"gateway6,omitempty"`
	Routes    []Route  `yaml:"routes,omitempty"`
}

type match struct {
	MACAddress string `yaml:"macaddress,omitempty"`
}

// Files renders the seed's three files. Every problem is reported at once, naming the
// field.
func (s Seed) Files() (meta, user, network []byte, err error) {
	if err := s.validate(); err != nil {
		return nil, nil, nil, err
	}
	if meta, err = yaml.Marshal(metaDoc{InstanceID: s.InstanceID, LocalHostname: s.Hostname}); err != nil {
		return nil, nil, nil, err
	}
	f := false
	u := userDoc{Hostname: s.Hostname, SSHAuthorizedKeys: s.AuthorizedKeys, SSHPwauth: &f}
	// The login user is root (as the original's images): cloud-init's default would
	// lock root's keys behind a "please log in as debian" command.
	u.DisableRoot = &f
	if s.HostKey != "" {
		t := true
		u.SSHDeleteKeys = &t
		u.SSHKeys = sshKeys{Ed25519Private: s.HostKey, Ed25519Public: s.HostKeyPublic}
	}
	body, err := yaml.Marshal(u)
	if err != nil {
		return nil, nil, nil, err
	}
	user = append([]byte("#cloud-config\n"), body...)
	nd := netDoc{Version: 2, Ethernets: map[string]ethernet{}}
	for i, in := range s.Interfaces {
		e := ethernet{SetName: in.Name, Addresses: in.Addresses, Routes: in.Routes}
		if in.MAC != "" {
			e.Match = &match{MACAddress: strings.ToLower(in.MAC)}
		}
		if in.Gateway != "" {
			if a, _ := netip.ParseAddr(in.Gateway); a.Is4() {
				e.Gateway4 = in.Gateway
			} else {
				e.Gateway6 = in.Gateway
			}
		}
		key := in.Name
		if key == "" {
			key = fmt.Sprintf("nic%d", i)
		}
		nd.Ethernets[key] = e
	}
	if network, err = yaml.Marshal(nd); err != nil {
		return nil, nil, nil, err
	}
	return meta, user, network, nil
}

func (s Seed) validate() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if s.InstanceID == "" {
		bad("instance_id: required")
	}
	if s.Hostname == "" || strings.ContainsAny(s.Hostname, " \t\r\n/") {
		bad("hostname: expected a host name, got %q", s.Hostname)
	}
	for i, k := range s.AuthorizedKeys {
		if strings.ContainsAny(k, "\r\n") || strings.TrimSpace(k) == "" {
			bad("authorized_keys[%d]: expected one authorized_keys line", i)
		}
	}
	if (s.HostKey == "") != (s.HostKeyPublic == "") {
		bad("host_key: the private and the public key go together")
	}
	for i, in := range s.Interfaces {
		for j, a := range in.Addresses {
			if _, err := netip.ParsePrefix(a); err != nil {
				bad("interfaces[%d].addresses[%d]: expected a CIDR address such as 10.10.1.2/24, got %q", i, j, a)
			}
		}
		if in.Gateway != "" {
			if _, err := netip.ParseAddr(in.Gateway); err != nil {
				bad("interfaces[%d].gateway: expected an IP address, got %q", i, in.Gateway)
			}
		}
		for j, r := range in.Routes {
			if _, err := netip.ParsePrefix(r.To); err != nil {
				bad("interfaces[%d].routes[%d].to: expected a CIDR prefix, got %q", i, j, r.To)
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("seed: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Parse reads a seed's three files (network may be empty). It reads what [Seed.Files]
// writes, and the same keys when a person wrote them.
func Parse(meta, user, network []byte) (Seed, error) {
	var s Seed
	var md metaDoc
	if err := yaml.Unmarshal(meta, &md); err != nil {
		return Seed{}, fmt.Errorf("%s: %w", MetaData, err)
	}
	s.InstanceID, s.Hostname = md.InstanceID, md.LocalHostname
	if len(bytes.TrimSpace(user)) > 0 {
		first, _, _ := bytes.Cut(user, []byte("\n"))
		if !bytes.HasPrefix(bytes.TrimSpace(first), []byte("#cloud-config")) {
			return Seed{}, fmt.Errorf("%s: only #cloud-config user data is understood", UserData)
		}
		var ud userDoc
		if err := yaml.Unmarshal(user, &ud); err != nil {
			return Seed{}, fmt.Errorf("%s: %w", UserData, err)
		}
		if ud.Hostname != "" {
			s.Hostname = ud.Hostname
		}
		s.AuthorizedKeys = ud.SSHAuthorizedKeys
		s.HostKey, s.HostKeyPublic = ud.SSHKeys.Ed25519Private, ud.SSHKeys.Ed25519Public
	}
	if len(bytes.TrimSpace(network)) > 0 {
		var nd netDoc
		if err := yaml.Unmarshal(network, &nd); err != nil {
			return Seed{}, fmt.Errorf("%s: %w", NetworkConfig, err)
		}
		if nd.Version != 2 {
			return Seed{}, fmt.Errorf("%s: version %d is not understood (only 2)", NetworkConfig, nd.Version)
		}
		keys := make([]string, 0, len(nd.Ethernets))
		for k := range nd.Ethernets {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			e := nd.Ethernets[k]
			in := Interface{Name: e.SetName, Addresses: e.Addresses, Routes: e.Routes, Gateway: e.Gateway4}
			if in.Name == "" {
				in.Name = k
			}
			if in.Gateway == "" {
				in.Gateway = e.Gateway6
			}
			if e.Match != nil {
				in.MAC = strings.ToLower(e.Match.MACAddress)
			}
			s.Interfaces = append(s.Interfaces, in)
		}
	}
	if err := s.validate(); err != nil {
		return Seed{}, err
	}
	return s, nil
}
