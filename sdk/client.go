package sdk

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// LaunchConfig says how to start a plugin binary.
type LaunchConfig struct {
	// Path is the plugin executable.
	Path string
	Args []string
	// Env is added to the host's environment.
	Env []string
	// Logger receives the plugin's logs (and go-plugin's); nil discards them.
	Logger hclog.Logger
	// SHA256, when set, is checked against the binary right before it is executed.
	SHA256 []byte
	// StartTimeout bounds the handshake; zero means one minute.
	StartTimeout time.Duration
	// Dir is the plugin's working directory; empty means the host's. Relative paths in
	// the plugin's configuration resolve against it.
	Dir string
}

// Client is the host's side of a running plugin: its info and a client per kind. The
// kinds' clients hide gRPC: they return the SDK's Go types and *Error values with the
// plugin's codes.
type Client struct {
	pc    *plugin.Client // nil for in-process connections
	proto plugin.ClientProtocol
	base  Plugin
	info  Info
}

// Launch starts a plugin binary (gRPC over a Unix socket with mutual TLS), completes the
// handshake and reads its Info. On any failure the process is killed.
func Launch(ctx context.Context, cfg LaunchConfig) (*Client, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	cmd := exec.Command(cfg.Path, cfg.Args...)
	cmd.Env = append(os.Environ(), cfg.Env...)
	cmd.Dir = cfg.Dir
	cmd.Env = append(cmd.Env, EnvParentPID+"="+strconv.Itoa(os.Getpid()))
	cc := &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		Plugins:          pluginSet(nil),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           logger,
		StartTimeout:     cfg.StartTimeout,
		// See flowWindow; go-plugin's own options (its mutual TLS) come first.
		GRPCDialOptions: []grpc.DialOption{grpc.WithInitialWindowSize(flowWindow),
			grpc.WithInitialConnWindowSize(flowWindow)},
	}
	if cc.StartTimeout == 0 {
		cc.StartTimeout = time.Minute
	}
	if cfg.SHA256 != nil {
		cc.SecureConfig = &plugin.SecureConfig{Checksum: cfg.SHA256, Hash: sha256.New()}
	}
	pc := plugin.NewClient(cc)
	proto, err := pc.Client()
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("start plugin %s: %w", cfg.Path, err)
	}
	c, err := newClient(ctx, proto)
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("plugin %s: %w", cfg.Path, err)
	}
	c.pc = pc
	return c, nil
}

// NewClient wraps an established go-plugin connection, such as the one
// plugin.TestPluginGRPCConn returns, and reads the plugin's Info.
func NewClient(ctx context.Context, proto plugin.ClientProtocol) (*Client, error) {
	return newClient(ctx, proto)
}

func newClient(ctx context.Context, proto plugin.ClientProtocol) (*Client, error) {
	raw, err := proto.Dispense(dispenseBase)
	if err != nil {
		return nil, fmt.Errorf("dispense base: %w", err)
	}
	c := &Client{proto: proto, base: raw.(Plugin)}
	info, err := c.base.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("info: %w", err)
	}
	c.info = info
	return c, nil
}

// PluginSet returns the go-plugin plugin set for impl (both sides), for harnesses that
// connect a plugin in-process with plugin.TestPluginGRPCConn.
func PluginSet(impl Plugin) plugin.PluginSet { return pluginSet(impl) }

// Info returns what the plugin said of itself at launch.
func (c *Client) Info() Info { return c.info }

// ConfigSchema asks the plugin for its configuration schema.
func (c *Client) ConfigSchema(ctx context.Context) (ConfigSchema, error) {
	return c.base.ConfigSchema(ctx)
}

// Configure negotiates the API version against SupportedAPIVersions, validates cfg.JSON
// against the plugin's schema and hands the configuration to the plugin. It returns the
// negotiated version.
func (c *Client) Configure(ctx context.Context, provider Provider, configJSON []byte) (string, error) {
	version, err := NegotiateAPIVersion(SupportedAPIVersions, c.info.APIVersions)
	if err != nil {
		return "", fmt.Errorf("plugin %s: %w", c.info.Name, err)
	}
	schema, err := c.base.ConfigSchema(ctx)
	if err != nil {
		return "", fmt.Errorf("plugin %s: config schema: %w", c.info.Name, err)
	}
	if err := schema.Validate(configJSON); err != nil {
		return "", fmt.Errorf("plugin %s: %w", c.info.Name, err)
	}
	cfg := Config{APIVersion: version, Provider: provider, JSON: configJSON}
	if err := c.base.Configure(ctx, cfg); err != nil {
		return "", fmt.Errorf("plugin %s: configure: %w", c.info.Name, err)
	}
	return version, nil
}

func (c *Client) dispense(k Kind) (any, error) {
	if !c.info.Serves(k) {
		return nil, Errorf(CodeUnimplemented, "plugin %s does not serve kind %s (serves %v)", c.info.Name, k, c.info.Kinds)
	}
	raw, err := c.proto.Dispense(string(k))
	if err != nil {
		return nil, fmt.Errorf("plugin %s: dispense %s: %w", c.info.Name, k, err)
	}
	return raw, nil
}

// VIM returns the plugin's VIM client.
func (c *Client) VIM() (VIM, error) {
	raw, err := c.dispense(KindVIM)
	if err != nil {
		return nil, err
	}
	return raw.(VIM), nil
}

// Deployer returns the plugin's Deployer client.
func (c *Client) Deployer() (Deployer, error) {
	raw, err := c.dispense(KindDeployer)
	if err != nil {
		return nil, err
	}
	return raw.(Deployer), nil
}

// WAN returns the plugin's WAN client.
func (c *Client) WAN() (WAN, error) {
	raw, err := c.dispense(KindWAN)
	if err != nil {
		return nil, err
	}
	return raw.(WAN), nil
}

// Monitor returns the plugin's Monitor client.
func (c *Client) Monitor() (Monitor, error) {
	raw, err := c.dispense(KindMonitor)
	if err != nil {
		return nil, err
	}
	return raw.(Monitor), nil
}

// Ping checks that the plugin still answers.
func (c *Client) Ping() error { return c.proto.Ping() }

// Exited reports whether the plugin process has exited.
func (c *Client) Exited() bool { return c.pc != nil && c.pc.Exited() }

// Pid returns the plugin's process id, or 0 for an in-process connection.
func (c *Client) Pid() int {
	if c.pc == nil {
		return 0
	}
	if rc := c.pc.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

// Kill stops the plugin: gracefully first, then by force after two seconds.
func (c *Client) Kill() {
	if c.pc != nil {
		c.pc.Kill()
		return
	}
	_ = c.proto.Close()
}
