package xenvim

import (
	"fmt"

	"github.com/necos/necos/sdk"
	"libvirt.org/go/libvirt"
)

// AttrSSHPublicKey is the Part attribute holding the part's SSH public key (an
// authorized_keys line): what a node must authorize for the part's credential to work.
const AttrSSHPublicKey = "ssh-public-key"

// Credentials: Create issues every part an ed25519 key pair of its own. The private key
// is kept under key_dir (keys.go), never in the domains' metadata; Describe hands it out
// as the part's credential (kind ssh-key, user ssh.user, host key ssh.host_key) and the
// public key as the attribute AttrSSHPublicKey. Real guests (images configured) get the
// public key through their NoCloud seed, with an SSH host key of their own that the
// plugin generated (its public half is pinned: AttrSSHKnownHosts, and the Deployer).

// AttrSSHKnownHosts is the Part attribute holding the nodes' pinned SSH host keys, one
// known_hosts line per node ("ADDRESS ssh-ed25519 AAAA...").
const AttrSSHKnownHosts = "ssh-known-hosts"

// AttrNetns is the Part attribute naming the network namespace the part's nodes are
// reached from (their addresses are private to the part's network).
const AttrNetns = "netns"

// ensureKey makes sure the part has a key pair and returns its private key. A part
// made by an earlier version kept it in its record: it moves to the key store, and the
// record is rewritten without it.
func (p *Plugin) ensureKey(conn *libvirt.Connect, s *settings, ref sdk.PartRef, rec partRecord, existing []node) (partRecord, string, error) {
	key, err := readPartKey(s, ref)
	if err != nil {
		return rec, "", sdk.Errorf(sdk.CodeInternal, "part %s: %v", ref, err)
	}
	if key == "" && rec.SSHKey != "" {
		key = rec.SSHKey
		if err := writePartKey(s, ref, key); err != nil {
			return rec, "", sdk.Errorf(sdk.CodeInternal, "part %s: %v", ref, err)
		}
	}
	if rec.SSHKey != "" {
		rec.SSHKey = ""
		rec.Generation++
		if err := p.writeRecord(conn, existing, rec); err != nil {
			return rec, "", fmt.Errorf("part %s: move its SSH key out of the domains' metadata: %w", ref, err)
		}
		p.log.Info("moved a part's SSH key out of the domains' metadata", "part", ref.String())
	}
	if key != "" {
		return rec, key, nil
	}
	private, _, err := newPartKey(keyComment(ref))
	if err != nil {
		return rec, "", sdk.Errorf(sdk.CodeInternal, "part %s: %v", ref, err)
	}
	if err := writePartKey(s, ref, private); err != nil {
		return rec, "", sdk.Errorf(sdk.CodeInternal, "part %s: %v", ref, err)
	}
	return rec, private, nil
}

// setCredential puts the part's credential and public key into part.
func setCredential(s *settings, ref sdk.PartRef, rec partRecord, part *sdk.Part) {
	key, _ := readPartKey(s, ref)
	if key == "" {
		key = rec.SSHKey // an earlier version's part not yet moved
	}
	if key == "" {
		return
	}
	part.Credential = sdk.Credential{Kind: sdk.CredentialSSHKey, User: s.ssh.user, Secret: key,
		HostKey: s.ssh.hostKeyText}
	if pub, err := publicOf(key, keyComment(ref)); err == nil {
		part.Attributes[AttrSSHPublicKey] = pub
	}
}
