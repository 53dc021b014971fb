// Command kafkad-bench-franz-go is the franz-go peer of kafkad-bench: the producer, single and
// batch consumer loops a Go user would write with franz-go (github.com/twmb/franz-go, pinned in
// go.mod) and encoding/json, measured the way kafkad-bench measures its own runs, so it can run
// them as a further side on the same brokers, interleaved with kafkad's.
//
//	kafkad-bench-franz-go produce -bootstrap B -topic T -messages N -payloads FILE
//	kafkad-bench-franz-go single  -bootstrap B -topic T -group G -messages N [fetch options]
//	kafkad-bench-franz-go batch   -bootstrap B -topic T -group G -messages N [fetch and batch options]
//
// The producer sends pre-serialized seed-shaped values (FILE: one per line, written by
// kafkad-bench from the producer role's own messages), keyed with the message id in decimal as
// kafkad's producer keys them, with the seed's settings: acks=all, idempotence, lz4, linger 5
// ms. The consumers decode every record into the seed's KafkaMessage with encoding/json. The
// single consumer marks each record for the next automatic commit once it is decoded (kafkad's
// single role stores each offset after processing it, and librdkafka commits the stored
// offsets every 5 s); the batch consumer forms batches by kafkad's rule and commits each
// synchronously.
//
// The measured window is kafkad-bench's: producer from the first acknowledgement to the last;
// consumers from the first record handed to processing to the N-th processed. CPU is
// getrusage(RUSAGE_SELF) over the window (every thread of the process), peak RSS is VmHWM. The
// last line of stdout is one JSON object with the fields of kafkad-bench's own run results.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaMessage is the seed's message in the shape kafkad decodes it into: the timestamp parsed,
// the free-form metadata kept as raw JSON.
type KafkaMessage struct {
	MessageID  int64           `json:"message_id"`
	Content    string          `json:"content"`
	ProducerID string          `json:"producer_id"`
	Timestamp  time.Time       `json:"timestamp"`
	Metadata   json.RawMessage `json:"metadata"`
}

// result has the fields of kafkad-bench's PhaseResult.
type result struct {
	Messages  uint64  `json:"messages"`
	Seconds   float64 `json:"seconds"`
	CPUUserS  float64 `json:"cpu_user_s"`
	CPUSysS   float64 `json:"cpu_sys_s"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	StartupS  float64 `json:"startup_s"`
}

// mark is a moment: monotonic time and the CPU the process has used so far.
type mark struct {
	at        time.Time
	user, sys float64
}

func now() mark {
	var usage syscall.Rusage
	// On failure the CPU figures stay 0, as kafkad-bench's own runs do.
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	seconds := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return mark{at: time.Now(), user: seconds(usage.Utime), sys: seconds(usage.Stime)}
}

func window(created time.Time, start, end mark, messages uint64) result {
	return result{
		Messages:  messages,
		Seconds:   end.at.Sub(start.at).Seconds(),
		CPUUserS:  end.user - start.user,
		CPUSysS:   end.sys - start.sys,
		PeakRSSMB: peakRSSMB(),
		StartupS:  start.at.Sub(created).Seconds(),
	}
}

// peakRSSMB is the process's VmHWM in MiB, 0 where /proc is unavailable.
func peakRSSMB() float64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				return 0
			}
			return kb / 1024
		}
	}
	return 0
}

type options struct {
	bootstrap, topic, group, payloads string
	messages                          uint64
	fetchMinBytes, maxPartitionBytes  int
	fetchMaxWait, maxWait             time.Duration
	minSize, maxSize                  int
}

func main() {
	if len(os.Args) < 2 {
		fail(errors.New("usage: kafkad-bench-franz-go produce|single|batch -bootstrap B -topic T -messages N ..."))
	}
	workload := os.Args[1]
	var o options
	flags := flag.NewFlagSet(workload, flag.ExitOnError)
	flags.StringVar(&o.bootstrap, "bootstrap", "", "brokers, host:port,...")
	flags.StringVar(&o.topic, "topic", "", "topic to produce to or consume from")
	flags.StringVar(&o.group, "group", "kafkad-bench-franz-go", "consumer group")
	flags.StringVar(&o.payloads, "payloads", "", "record values, one per line (produce)")
	flags.Uint64Var(&o.messages, "messages", 0, "messages to produce or to consume")
	flags.IntVar(&o.fetchMinBytes, "fetch-min-bytes", 1, "fetch.min.bytes")
	flags.DurationVar(&o.fetchMaxWait, "fetch-max-wait", 500*time.Millisecond, "fetch.wait.max.ms")
	flags.IntVar(&o.maxPartitionBytes, "max-partition-fetch-bytes", 1<<20, "max.partition.fetch.bytes")
	flags.IntVar(&o.minSize, "min-size", 10, "batch: smallest batch handed on while records keep coming")
	flags.IntVar(&o.maxSize, "max-size", 500, "batch: largest batch")
	flags.DurationVar(&o.maxWait, "max-wait", 5*time.Second, "batch: longest a batch waits to fill")
	if err := flags.Parse(os.Args[2:]); err != nil {
		fail(err)
	}
	if o.bootstrap == "" || o.topic == "" || o.messages == 0 {
		fail(errors.New("-bootstrap, -topic and -messages (above 0) are required"))
	}
	if o.minSize < 1 || o.maxSize < o.minSize {
		fail(fmt.Errorf("batch sizes: need 1 <= -min-size (%d) <= -max-size (%d)", o.minSize, o.maxSize))
	}
	var out result
	var err error
	switch workload {
	case "produce":
		out, err = produce(o)
	case "single":
		out, err = single(o)
	case "batch":
		out, err = batch(o)
	default:
		err = fmt.Errorf("unknown workload %q: produce, single or batch", workload)
	}
	if err != nil {
		fail(fmt.Errorf("%s: %w", workload, err))
	}
	line, err := json.Marshal(out)
	if err != nil {
		fail(err)
	}
	fmt.Println(string(line))
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "kafkad-bench-franz-go: %v\n", err)
	os.Exit(1)
}

// deadline bounds a run as kafkad-bench bounds its own: a minute plus a millisecond a message.
func deadline(messages uint64) time.Time {
	return time.Now().Add(time.Minute + time.Duration(messages)*time.Millisecond)
}

func readPayloads(path string) ([][]byte, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("payloads: %w", err)
	}
	defer file.Close()
	var payloads [][]byte
	lines := bufio.NewScanner(file)
	lines.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for lines.Scan() {
		if len(lines.Bytes()) > 0 {
			payloads = append(payloads, append([]byte(nil), lines.Bytes()...))
		}
	}
	if err := lines.Err(); err != nil {
		return nil, fmt.Errorf("payloads %s: %w", path, err)
	}
	if len(payloads) == 0 {
		return nil, fmt.Errorf("payloads %s: no values in the file", path)
	}
	return payloads, nil
}

// acks counts acknowledgements and marks the first and the last, from franz-go's promise
// goroutines.
type acks struct {
	target        uint64
	acked, failed atomic.Uint64
	mu            sync.Mutex
	firstErr      error
	first, last   mark
}

func (a *acks) promise(_ *kgo.Record, err error) {
	if err != nil {
		a.failed.Add(1)
		a.mu.Lock()
		if a.firstErr == nil {
			a.firstErr = err
		}
		a.mu.Unlock()
		return
	}
	n := a.acked.Add(1)
	if n == 1 || n == a.target {
		at := now()
		a.mu.Lock()
		if n == 1 {
			a.first = at
		}
		if n == a.target {
			a.last = at
		}
		a.mu.Unlock()
	}
}

func produce(o options) (result, error) {
	payloads, err := readPayloads(o.payloads)
	if err != nil {
		return result{}, err
	}
	created := time.Now()
	// franz-go's defaults are acks=all and idempotence. It has no "one request in flight" for
	// an idempotent producer: MaxProduceRequestsInflightPerBroker applies only with
	// idempotence disabled (its config check rejects any other value, and its sink then allows
	// up to 5 per broker), so the seed's max.in.flight=1 cannot be asked of it.
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(o.bootstrap, ",")...),
		kgo.DefaultProduceTopic(o.topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.Lz4Compression()),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	if err != nil {
		return result{}, fmt.Errorf("client: %w", err)
	}
	defer client.Close()
	counter := &acks{target: o.messages}
	ctx, cancel := context.WithDeadline(context.Background(), deadline(o.messages))
	defer cancel()
	for i := uint64(0); i < o.messages; i++ {
		record := &kgo.Record{
			Key:   strconv.AppendUint(nil, i+1, 10),
			Value: payloads[i%uint64(len(payloads))],
		}
		client.Produce(ctx, record, counter.promise)
	}
	// Flush returns once every promise has been called.
	if err := client.Flush(ctx); err != nil {
		return result{}, fmt.Errorf("flush: %w", err)
	}
	counter.mu.Lock()
	defer counter.mu.Unlock()
	if failed := counter.failed.Load(); failed > 0 || counter.acked.Load() != o.messages {
		return result{}, fmt.Errorf("%d of %d acknowledged, %d failed (first: %v)",
			counter.acked.Load(), o.messages, failed, counter.firstErr)
	}
	// The first acknowledgement is the window's start: the messages after it are counted.
	return window(created, counter.first, counter.last, o.messages-1), nil
}

// session is a consumer in the group, reading the topic from its start with the role's fetch
// settings, within the run's deadline; it marks the first record handed to processing.
type session struct {
	client *kgo.Client
	ctx    context.Context
	cancel context.CancelFunc
	first  *mark
}

func join(o options, commit kgo.Opt) (*session, error) {
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(o.bootstrap, ",")...),
		kgo.ConsumerGroup(o.group),
		kgo.ConsumeTopics(o.topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMinBytes(int32(o.fetchMinBytes)),
		kgo.FetchMaxWait(o.fetchMaxWait),
		kgo.FetchMaxPartitionBytes(int32(o.maxPartitionBytes)),
		commit,
	)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline(o.messages))
	return &session{client: client, ctx: ctx, cancel: cancel}, nil
}

func (s *session) close() {
	s.cancel()
	s.client.Close()
}

// handle is what processing a record means here: decoding it into the seed's message.
func (s *session) handle(record *kgo.Record) error {
	if s.first == nil {
		at := now()
		s.first = &at
	}
	var message KafkaMessage
	if err := json.Unmarshal(record.Value, &message); err != nil {
		return fmt.Errorf("record %s[%d]@%d: %w", record.Topic, record.Partition, record.Offset, err)
	}
	return nil
}

// fetchError is the first real error of a poll: a poll's own time limit running out is not one.
func fetchError(fetches kgo.Fetches) error {
	for _, e := range fetches.Errors() {
		if !errors.Is(e.Err, context.DeadlineExceeded) {
			return fmt.Errorf("fetch %s[%d]: %w", e.Topic, e.Partition, e.Err)
		}
	}
	return nil
}

// single reads one record at a time: decode it, then mark it for the next automatic commit.
func single(o options) (result, error) {
	created := time.Now()
	s, err := join(o, kgo.AutoCommitMarks())
	if err != nil {
		return result{}, err
	}
	defer s.close()
	seen := uint64(0)
	for seen < o.messages {
		fetches := s.client.PollFetches(s.ctx)
		if s.ctx.Err() != nil {
			return result{}, fmt.Errorf("%d of %d messages in time", seen, o.messages)
		}
		if err := fetchError(fetches); err != nil {
			return result{}, err
		}
		for records := fetches.RecordIter(); !records.Done() && seen < o.messages; {
			record := records.Next()
			if err := s.handle(record); err != nil {
				return result{}, err
			}
			s.client.MarkCommitRecords(record)
			seen++
		}
	}
	end := now()
	return window(created, *s.first, end, o.messages), nil
}

// batch forms batches by kafkad's rule (hand a batch on at max-size records; or at min-size
// and nothing more buffered; or once its first record waited max-wait), decoding each record
// as it arrives, and commits each batch synchronously before reading on.
func batch(o options) (result, error) {
	created := time.Now()
	s, err := join(o, kgo.DisableAutoCommit())
	if err != nil {
		return result{}, err
	}
	defer s.close()
	var end *mark
	seen := uint64(0)
	pending := make([]*kgo.Record, 0, o.maxSize)
	var started time.Time
	for end == nil {
		if s.ctx.Err() != nil {
			return result{}, fmt.Errorf("%d of %d messages in time", seen, o.messages)
		}
		var fetches kgo.Fetches
		room := o.maxSize - len(pending)
		if len(pending) >= o.minSize {
			// A nil context returns what is buffered, without waiting.
			fetches = s.client.PollRecords(nil, room)
		} else {
			poll, stop := context.WithTimeout(s.ctx, 100*time.Millisecond)
			fetches = s.client.PollRecords(poll, room)
			stop()
		}
		if err := fetchError(fetches); err != nil {
			return result{}, err
		}
		got := 0
		for records := fetches.RecordIter(); !records.Done(); got++ {
			record := records.Next()
			if err := s.handle(record); err != nil {
				return result{}, err
			}
			if started.IsZero() {
				started = time.Now()
			}
			pending = append(pending, record)
		}
		waited := !started.IsZero() && time.Since(started) >= o.maxWait
		ready := len(pending) >= o.maxSize || (len(pending) >= o.minSize && got == 0) || waited
		if len(pending) == 0 || !ready {
			continue
		}
		seen += uint64(len(pending))
		if seen >= o.messages {
			at := now()
			end = &at
		}
		if err := s.client.CommitRecords(s.ctx, pending...); err != nil {
			return result{}, fmt.Errorf("commit: %w", err)
		}
		pending = pending[:0]
		started = time.Time{}
	}
	return window(created, *s.first, *end, o.messages), nil
}
