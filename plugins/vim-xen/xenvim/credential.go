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
// lives in the part's record, in the libvirt metadata of every one of its domains, so it
// survives plugin restarts and lives exactly as long as the part; Describe hands it out
// as the part's credential (kind ssh-key, user ssh.user, host key ssh.host_key) and the
// public key as the attribute AttrSSHPublicKey.
//
// The key is only useful once the guest authorizes it. The plugin attaches no disk and
// writes nothing into the guest: on a real Xen host the provider's image does it, e.g.
// cloud-init (a NoCloud seed or the provider's metadata service) writing the part's
// public key into the user's authorized_keys at first boot. In the tests a real sshd on
// 127.0.0.1 stands in for the nodes and is given the public key as its
// AuthorizedKeysFile.

// ensureKey gives rec a key pair when it has none yet: a new part, or one made before
// the plugin issued keys, whose existing nodes then get the new record.
func (p *Plugin) ensureKey(conn *libvirt.Connect, ref sdk.PartRef, rec partRecord, existing []node) (partRecord, error) {
	if rec.SSHKey != "" {
		return rec, nil
	}
	private, _, err := newPartKey(keyComment(ref))
	if err != nil {
		return rec, sdk.Errorf(sdk.CodeInternal, "part %s: %v", ref, err)
	}
	rec.SSHKey = private
	if len(existing) > 0 {
		rec.Generation++
		if err := p.writeRecord(conn, existing, rec); err != nil {
			return rec, fmt.Errorf("part %s: record its SSH key: %w", ref, err)
		}
		p.log.Info("issued an SSH key to an existing part", "part", ref.String())
	}
	return rec, nil
}

// setCredential puts the part's credential and public key into part.
func setCredential(s *settings, ref sdk.PartRef, rec partRecord, part *sdk.Part) {
	if rec.SSHKey == "" {
		return
	}
	part.Credential = sdk.Credential{Kind: sdk.CredentialSSHKey, User: s.ssh.user, Secret: rec.SSHKey,
		HostKey: s.ssh.hostKeyText}
	if pub, err := publicOf(rec.SSHKey, keyComment(ref)); err == nil {
		part.Attributes[AttrSSHPublicKey] = pub
	}
}
