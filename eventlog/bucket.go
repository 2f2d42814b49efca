package eventlog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is a JetStream key-value bucket of values that wait for a
// processor, such as the parts of remote_write samples.
type Bucket struct {
	kv   jetstream.KeyValue
	name string
}

// BucketConfig says how to create a Bucket.
type BucketConfig struct {
	Name, Description string
	// MaxAge removes keys older than it, a safety net for keys no
	// processor removes; 0 means never.
	MaxAge   time.Duration
	Replicas int
}

// OpenBucket creates the bucket, or updates its settings, and opens it.
func OpenBucket(ctx context.Context, js jetstream.KeyValueManager, c BucketConfig) (*Bucket, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      c.Name,
		Description: c.Description,
		History:     1,
		TTL:         c.MaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    max(c.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("cannot open the JetStream key-value bucket %s: %w", c.Name, err)
	}
	return &Bucket{kv: kv, name: c.Name}, nil
}

// Put stores value under key and returns once JetStream stored it. It
// wraps ErrUnavailable when it could not.
func (b *Bucket) Put(ctx context.Context, key string, value []byte) error {
	if _, err := b.kv.Put(ctx, key, value); err != nil {
		return fmt.Errorf("%w: cannot store %s in the bucket %s: %w", ErrUnavailable, key, b.name, err)
	}
	return nil
}

// Has tells whether key is in the bucket.
func (b *Bucket) Has(ctx context.Context, key string) (bool, error) {
	_, err := b.kv.Get(ctx, key)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return false, nil
	}
	return false, fmt.Errorf("cannot read %s from the bucket %s: %w", key, b.name, err)
}

// Delete removes key.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	if err := b.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("cannot delete %s from the bucket %s: %w", key, b.name, err)
	}
	return nil
}

// Watch calls fn with every key of the bucket, then with key "" once those
// were all sent, then with every change, until ctx is done (it then returns
// ctx's error) or the watch fails. A deleted key comes with a nil value.
func (b *Bucket) Watch(ctx context.Context, fn func(key string, value []byte)) error {
	w, err := b.kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("cannot watch the bucket %s: %w", b.name, err)
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			switch {
			case !ok:
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return errors.New("the watch of the bucket " + b.name + " stopped")
			case e == nil:
				fn("", nil)
			case e.Operation() != jetstream.KeyValuePut:
				fn(e.Key(), nil)
			default:
				v := e.Value()
				if v == nil {
					v = []byte{}
				}
				fn(e.Key(), v)
			}
		}
	}
}
