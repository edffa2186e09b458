package store

import (
	"encoding/json"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func jsonUnmarshal(key string, raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

func clientOpDelete(key string, prefix bool) clientv3.Op {
	if prefix {
		return clientv3.OpDelete(key, clientv3.WithPrefix())
	}
	return clientv3.OpDelete(key)
}
