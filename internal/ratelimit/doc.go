// Package ratelimit holds sechard's rate-limit machinery: the generic cell
// rate algorithm (GCRA) and the two stores that keep its state, in process
// memory or in Redis, behind one [Store] interface. It knows nothing of
// HTTP, configuration files or logging: the caller decides which budgets a
// request spends, what a client is, and what to do when a store fails.
//
// A [Rate] is N events per window with a burst B: a bucket of B tokens that
// starts full and gains one token every window/N. A request is admitted
// when every budget it spends has a token, and then takes one from each;
// a refused request takes nothing. After window·B/N of silence a bucket is
// full again, and a store may forget it. [NewRate] refuses N < 1, a window
// ≤ 0, B < 1, and any rate whose empty bucket would take over 100 years to
// refill (so no arithmetic on Unix nanoseconds can overflow).
//
// A [Budget] is one client's bucket of one [Kind] and tag. [Store.Take]
// spends a request from one or two budgets atomically (both or neither)
// and reports, in each budget's [Result], what remains, when the bucket is
// full again and, for a refusal, when to retry.
//
// Guarantees:
//
//   - [MemoryStore] never fails and never allocates on Take. It holds at
//     most max(maxKeys, 256) keys whatever the clients do: a key is a
//     64-bit digest (randomly seeded per store) of the client and budget,
//     so a 10 KB client key costs what a short one does. A full shard
//     evicts, among a few sampled keys, the one closest to a full bucket
//     (an idle one first), and a sweeper forgets idle keys until Destruct.
//     It is safe for concurrent use; one client's concurrent requests
//     cannot overspend.
//   - [RedisStore] decides with one script call, on Redis's clock, so
//     every instance sharing the Redis shares the budgets; a request's
//     keys share one Cluster hash slot, and each key expires when its
//     bucket is full again. It never retries: a call that fails or outlasts
//     the timeout is an error, and opens a circuit breaker during which
//     Take returns [ErrBreakerOpen] at once. Outages are reported once when
//     they begin and once when they end (see [RedisOptions]). The key
//     layout is fixed, so budgets survive upgrades.
//   - Both stores give the same answers for the same requests at the same
//     instants (the memory store in nanoseconds, Redis in microseconds).
package ratelimit
