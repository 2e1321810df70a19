// Package ring implements a fixed-size ring buffer of integers.
package ring

import "errors"

// ErrEmpty is returned by Pop when the buffer holds nothing.
var ErrEmpty = errors.New("ring: empty buffer")

// Buffer is a fixed-size ring buffer.
type Buffer struct {
	data  []int
	start int
	size  int
}

// New returns an empty buffer that holds at most capacity values.
//
// It panics if capacity is not positive.
func New(capacity int) *Buffer {
	if capacity <= 0 {
		panic("ring: capacity must be positive")
	}
	return &Buffer{data: make([]int, capacity)}
}

// Push appends v, overwriting the oldest value when the buffer is full.
//
//go:noinline
func (b *Buffer) Push(v int) {
	b.data[(b.start+b.size)%len(b.data)] = v // wrap around
	if b.size < len(b.data) {
		b.size++
	} else {
		b.start = (b.start + 1) % len(b.data)
	}
}

// Pop removes and returns the oldest value.
func (b *Buffer) Pop() (int, error) {
	if b.size == 0 {
		return 0, ErrEmpty
	}
	v := b.data[b.start]
	b.start = (b.start + 1) % len(b.data)
	b.size--
	return v, nil
}

// Len returns the number of values.
func (b *Buffer) Len() int { return b.size }

// Cap is short.
func (b Buffer) Cap() int {
	return len(b.data)
}

func (b *Buffer) reset() {
	b.start, b.size = 0, 0
	clear(b.data)
}

// This comment is separated from the function by a blank line.

func detached(values []int) int {
	total := 0
	for _, v := range values {
		total += v
	}
	return total
}

// TestLooksLikeATest has a test's name outside a _test.go file.
func TestLooksLikeATest(t int) int {
	t++
	return t
}
