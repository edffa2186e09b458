package influx

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/necos/necos/sdk"
)

// Defaults of the configuration keys.
const (
	DefaultDatabase       = "E2E_SLICE" // the database the NECOS MUSTS demo monitored into
	DefaultBatchSize      = 5000        // InfluxDB's recommended points per write request
	DefaultFlushInterval  = time.Second
	DefaultPrecision      = "ns" // what is written is what is read back
	DefaultQueueSize      = 200000
	DefaultMaxRetryTime   = time.Minute
	DefaultRequestTimeout = 30 * time.Second
	DefaultRetentionDays  = 30 // a month of metrics: enough for elasticity and post-mortems, bounded on disk
)

// Config is the plugin's configuration (the provider's plugin config, a JSON object).
type Config struct {
	// URL is InfluxDB's HTTP API, e.g. http://127.0.0.1:8086.
	URL string `json:"url"`
	// Database receives the points; RetentionPolicy, when set, selects one of its
	// retention policies (bucket "database/retention_policy").
	Database        string `json:"database"`
	RetentionPolicy string `json:"retention_policy"`
	// Username and Password authenticate when InfluxDB has auth-enabled (v2 API token
	// "username:password").
	Username string `json:"username"`
	Password string `json:"password"`
	// BatchSize is the most points sent in one write request.
	BatchSize int `json:"batch_size"`
	// FlushIntervalMS is how long a point waits at most before it is sent.
	FlushIntervalMS int `json:"flush_interval_ms"`
	// CreateDatabase creates the database at Configure when it is missing, and sets how
	// long the retention policy written to keeps points (RetentionDays).
	CreateDatabase bool `json:"create_database"`
	// RetentionDays is how long points are kept, in days, when CreateDatabase is set
	// (nil: DefaultRetentionDays; 0: forever). Without CreateDatabase the database's
	// owner decides and the plugin changes nothing.
	RetentionDays *int `json:"retention_days"`
	// Precision is the resolution times are stored at: ns, us, ms or s.
	Precision string `json:"precision"`
	// QueueSize is the most points held while InfluxDB is slow or away; beyond it
	// Write refuses points with ResourceExhausted.
	QueueSize int `json:"queue_size"`
	// MaxRetryTimeMS is how long writes failing for a transient reason (server away,
	// overloaded) are retried before points are dropped; past it each batch gets one
	// attempt until a write succeeds again.
	MaxRetryTimeMS int `json:"max_retry_time_ms"`
	// TimeoutMS bounds one HTTP request to InfluxDB.
	TimeoutMS int `json:"timeout_ms"`
}

// Schema is the configuration schema the plugin announces.
var Schema = sdk.ConfigSchema{Fields: []sdk.ConfigField{
	{Name: "url", Type: sdk.FieldString, Required: true, Description: "InfluxDB HTTP API base URL, e.g. http://127.0.0.1:8086 (InfluxDB 1.8+ with flux-enabled, or 2.x)"},
	{Name: "database", Type: sdk.FieldString, Default: DefaultDatabase, Description: "database the points go to"},
	{Name: "retention_policy", Type: sdk.FieldString, Description: "retention policy of the database; empty means the database's default"},
	{Name: "username", Type: sdk.FieldString, Description: "user, when InfluxDB has authentication enabled"},
	{Name: "password", Type: sdk.FieldString, Description: "password of username"},
	{Name: "batch_size", Type: sdk.FieldInt, Default: DefaultBatchSize, Description: "most points per write request"},
	{Name: "flush_interval_ms", Type: sdk.FieldInt, Default: int(DefaultFlushInterval / time.Millisecond), Description: "longest time a written point waits before it is sent"},
	{Name: "create_database", Type: sdk.FieldBool, Default: false, Description: "create the database at configuration when missing, and set its retention (retention_days; needs admin rights when auth is on)"},
	{Name: "retention_days", Type: sdk.FieldInt, Default: DefaultRetentionDays, Description: "with create_database: days the retention policy written to keeps points (0: forever); without it the database is left as its owner set it"},
	{Name: "precision", Type: sdk.FieldString, Default: DefaultPrecision, Description: "time resolution stored: ns, us, ms or s"},
	{Name: "queue_size", Type: sdk.FieldInt, Default: DefaultQueueSize, Description: "most points held in memory while InfluxDB is slow or away; beyond it Write fails with ResourceExhausted"},
	{Name: "max_retry_time_ms", Type: sdk.FieldInt, Default: int(DefaultMaxRetryTime / time.Millisecond), Description: "how long writes failing for a transient reason (InfluxDB away, overloaded) are retried before points are dropped"},
	{Name: "timeout_ms", Type: sdk.FieldInt, Default: int(DefaultRequestTimeout / time.Millisecond), Description: "bound of one HTTP request to InfluxDB"},
}}

var precisions = map[string]time.Duration{
	"ns": time.Nanosecond, "us": time.Microsecond, "ms": time.Millisecond, "s": time.Second,
}

// ParseConfig decodes raw (refusing unknown keys), fills defaults and checks every
// value, reporting all problems at once.
func ParseConfig(raw []byte) (Config, error) {
	var c Config
	if err := (sdk.Config{JSON: raw}).Decode(&c); err != nil {
		return Config{}, err
	}
	if c.Database == "" {
		c.Database = DefaultDatabase
	}
	if c.Precision == "" {
		c.Precision = DefaultPrecision
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	setDefault := func(key string, v *int, def int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			bad("%s: must be positive, got %d", key, *v)
		}
	}
	setDefault("batch_size", &c.BatchSize, DefaultBatchSize)
	setDefault("flush_interval_ms", &c.FlushIntervalMS, int(DefaultFlushInterval/time.Millisecond))
	setDefault("queue_size", &c.QueueSize, DefaultQueueSize)
	setDefault("max_retry_time_ms", &c.MaxRetryTimeMS, int(DefaultMaxRetryTime/time.Millisecond))
	setDefault("timeout_ms", &c.TimeoutMS, int(DefaultRequestTimeout/time.Millisecond))

	if c.RetentionDays == nil {
		d := DefaultRetentionDays
		c.RetentionDays = &d
	} else if *c.RetentionDays < 0 {
		bad("retention_days: expected 0 (forever) or more days, got %d", *c.RetentionDays)
	}
	if c.URL == "" {
		bad("url: required, e.g. http://127.0.0.1:8086")
	} else if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("url: expected http(s)://host:port, got %q", c.URL)
	}
	// A slash would split the v2 bucket name "database/retention_policy" elsewhere.
	for key, v := range map[string]string{"database": c.Database, "retention_policy": c.RetentionPolicy} {
		if strings.ContainsAny(v, "/") || strings.ContainsFunc(v, isControl) {
			bad("%s: must not contain '/' or control characters, got %q", key, v)
		}
	}
	if c.Password != "" && c.Username == "" {
		bad("password: set without username")
	}
	if _, ok := precisions[c.Precision]; !ok {
		bad("precision: expected ns, us, ms or s, got %q", c.Precision)
	}
	if c.QueueSize > 0 && c.BatchSize > c.QueueSize {
		bad("queue_size: must be at least batch_size (%d), got %d", c.BatchSize, c.QueueSize)
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return Config{}, sdk.Errorf(sdk.CodeInvalidArgument, "config: %s", strings.Join(problems, "; "))
	}
	c.URL = strings.TrimRight(c.URL, "/")
	return c, nil
}

// Bucket is the v2 API bucket naming the database and retention policy.
func (c Config) Bucket() string {
	if c.RetentionPolicy == "" {
		return c.Database
	}
	return c.Database + "/" + c.RetentionPolicy
}

// token is the v2 API token: InfluxDB 1.8 takes "username:password", or nothing when
// authentication is off.
func (c Config) token() string {
	if c.Username == "" {
		return ""
	}
	return c.Username + ":" + c.Password
}

func (c Config) precision() time.Duration { return precisions[c.Precision] }

func (c Config) flushInterval() time.Duration {
	return time.Duration(c.FlushIntervalMS) * time.Millisecond
}

func (c Config) maxRetryTime() time.Duration {
	return time.Duration(c.MaxRetryTimeMS) * time.Millisecond
}

func (c Config) timeout() time.Duration { return time.Duration(c.TimeoutMS) * time.Millisecond }

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
