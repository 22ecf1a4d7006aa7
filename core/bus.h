/*
 * The scopecast bus: scope -> subscribers, bounded queues, back-pressure,
 * audience filtering, presence and join/leave, counters.
 *
 * Model
 *   A bus holds scopes; a scope exists while it has subscribers (or held
 *   or remote presence entries, or kept history: see those). Each
 *   subscription (sc_sub_t) has a bounded queue of event references
 *   (capacity `maxsize`). sc_bus_emit() assigns the scope's next seq,
 *   encodes the event once (encoder hook) and pushes a reference into the
 *   queue of every matching subscriber; a full queue drops the newest event
 *   for that subscriber only, counted, reported to on_drop and logged
 *   (throttled per scope). Memory is bounded the same way: per owner
 *   (sc_owner_set_budget: bytes its queues hold together) and per bus
 *   (max_queued_bytes: bytes of every queued event, each once).
 *
 *   Every subscription belongs to an owner (sc_owner_t): a connection, a
 *   thread. The owner's `wake` callback runs when one of its queues gets an
 *   item or is closed, at most once until the owner re-arms with
 *   sc_owner_rearm() before draining. Owners without a wake callback get a
 *   built-in condition variable and may block in sc_owner_wait().
 *
 *   Presence grace (presence_grace > 0): a subscription ended with
 *   sc_sub_destroy_hold() (its connection dropped) leaves a "held" presence
 *   entry in its scope instead of a LEAVE: shown and counted for first/last
 *   like a live one, given nothing. A new subscription of the same session
 *   and user with sc_sub_opts_t.adopt takes it over silently; otherwise
 *   sc_bus_expire_held() announces its LEAVE once the grace has passed.
 *
 *   History (a history callback): a scope it names keeps its last change
 *   events (references to the same events the queues hold: no copy),
 *   bounded by count and age per scope and by history_max_bytes over the
 *   bus. Such a scope lives while it keeps events, subscribed or not, so
 *   its seq goes on. Each scope life has an epoch (a new one whenever a
 *   scope comes to life; in a cluster, the cluster's epoch for the scope
 *   while this node numbers its events as the cluster does: see
 *   sc_emit_t.epoch). A subscription may start from a point in the
 *   past (sc_sub_opts_t.since) or be moved back to one (sc_sub_recover):
 *   the kept events after it are replayed to it before its queue, with
 *   neither gap nor duplicate at the seam, since both happen under the
 *   scope's lock.
 *
 * Threads
 *   sc_bus_emit, sc_bus_subscribe, sc_bus_close*, sc_bus_presence and the
 *   counters are safe from any thread; sc_bus_presence_update runs on the
 *   subscription's owner thread. Emit never blocks on a consumer: it
 *   takes only the scope's shard lock (scopes are spread over sharded locks),
 *   and queues are single-producer (under that lock) / single-consumer (the
 *   owner) rings. sc_sub_* functions that consume run on the owner's thread
 *   only ("Thread: owner"). Callbacks (wake, on_drop, on_disconnect, log,
 *   encoder) must not block; wake and the encoder run with a shard lock held
 *   and must not call back into the bus.
 *
 * Ownership
 *   The embedder owns the bus, every owner and every sc_sub_t it got from
 *   sc_bus_subscribe(); it destroys subscriptions (sc_sub_destroy) before
 *   their owner, and owners before the bus. Events handed out are new
 *   references (release with sc_event_unref).
 */
#ifndef SC_BUS_H
#define SC_BUS_H

#include "common.h"
#include "conn.h"
#include "event.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sc_bus sc_bus_t;
typedef struct sc_owner sc_owner_t;
typedef struct sc_sub sc_sub_t;

/* Why a subscription was ended by the bus (the protocol's `closed.reason`). */
enum sc_close_reason {
    SC_CLOSE_NONE = 0,     /* still open */
    SC_CLOSE_CLOSED = 1,   /* sc_bus_close() of its scope or of everything */
    SC_CLOSE_KICKED = 2,   /* sc_bus_close_user() */
    SC_CLOSE_SHUTDOWN = 3, /* sc_bus_close(..., SC_CLOSE_SHUTDOWN) */
};

/* on_drop: an event was dropped for one subscriber (its queue was full).
 * Called on the emitter's thread after the bus released its locks; `ev` is
 * borrowed. A non-zero return is logged as a callback error and changes
 * nothing else. */
typedef int (*sc_on_drop_fn)(void *ud, const char *scope, const sc_event_t *ev);

/* on_disconnect: a subscription ended. Called exactly once per subscription,
 * from sc_sub_destroy() on the owner's thread; `conn` is NULL when the
 * subscription had none. A non-zero return is logged, nothing else. */
typedef int (*sc_on_disconnect_fn)(void *ud, const char *scope,
                                   const sc_conn_t *conn);

/* Presence hook: an entry of this bus (a shown subscription, or a held
 * entry) joined (SC_EVENT_JOIN), left (SC_EVENT_LEAVE) or changed its meta
 * (SC_EVENT_UPDATE; conn has the new meta), whether or not anyone here
 * was told. Not called for entries added with sc_bus_remote_join, nor for
 * sc_bus_close (no leave). Called with the scope's shard lock held, in
 * the scope's order: quick, no calls into the bus; `conn` is borrowed.
 * The server's broker announces these to the other nodes. */
typedef void (*sc_on_presence_fn)(void *ud, int kind, const char *scope,
                                  const sc_conn_t *conn);

/* Encoder hook: called once per event with a shard lock held; it should
 * call sc_event_set_frame(). A non-zero return rejects the emit (no seq is
 * used, nothing is queued) and sc_bus_emit returns SC_ENOMEM. */
typedef int (*sc_encode_fn)(void *ud, sc_event_t *ev);

/* Monotonic clock in seconds, injectable so tests need no sleeping. */
typedef double (*sc_clock_fn)(void *ud);

/* How much history a scope keeps: the last max_events change events
 * and/or those younger than max_age seconds (0 = no bound of that kind;
 * both 0 = no history). */
typedef struct sc_history_limits {
    uint32_t max_events;
    double max_age;
} sc_history_limits_t;

/* History hook: fills *out for `scope` (left zeroed: no history). Called
 * when a scope comes to life, and for an emit into a scope that does not
 * exist, with a shard lock held: quick, no calls into the bus. */
typedef void (*sc_history_fn)(void *ud, const char *scope,
                              sc_history_limits_t *out);

typedef struct sc_bus_config {
    int maxsize;           /* queue bound per subscription (>= 1) */
    sc_on_drop_fn on_drop; /* optional */
    void *on_drop_ud;
    sc_on_presence_fn on_presence; /* optional */
    void *on_presence_ud;
    sc_log_fn log; /* optional; NULL = silent */
    void *log_ud;
    sc_encode_fn encode; /* optional; NULL = events carry no frame */
    void *encode_ud;
    sc_clock_fn clock; /* optional; NULL = CLOCK_MONOTONIC */
    void *clock_ud;
    double drop_log_interval; /* seconds between drop warnings per scope
                                 (default 10) */
    /* Memory. An event costs its allocations and its frame (each event
     * once, however many queues hold it). While the events held by queues
     * cost max_queued_bytes or more, emits are dropped for every
     * subscriber (counted, notified as usual); 0 = no limit. */
    size_t max_queued_bytes;
    /* Free an event's payload once the encoder has put it in the frame
     * (payloads of SC__PAYLOAD_OWN_MIN = 1 KiB or more; smaller ones share
     * the event's allocation): one copy per queued event instead of two.
     * sc_event_payload then returns NULL for such events. Default false. */
    bool release_payload;
    /* Presence grace, in seconds (0 = off, the default): how long the
     * presence entry of a subscription ended with sc_sub_destroy_hold()
     * stays "held" before its LEAVE (see there). */
    double presence_grace;
    /* History (see the model): which scopes keep events (NULL: none), and
     * what every kept event may cost together (0 = no limit). Past the
     * budget the oldest kept events of the emitting scope's shard go
     * first, least recently emitted-into scope first; a scope that still
     * cannot keep its event loses its kept events. Emitters on different
     * shards may each pass it by one event at the same moment. */
    sc_history_fn history;
    void *history_ud;
    size_t history_max_bytes;
    /* Seeds the scopes' epochs (0: a random seed). Epochs of one bus never
     * repeat; buses with different seeds give different ones. */
    uint64_t epoch_seed;
} sc_bus_config_t;

#define SC_BUS_DEFAULT_MAXSIZE 256
#define SC_BUS_DROP_LOG_INTERVAL 10.0

/* Fills `cfg` with the defaults: maxsize 256, 10 s drop-log interval, no
 * hooks, no memory limit, payloads kept. Start from this and change what
 * you need. Thread: any. */
void sc_bus_config_default(sc_bus_config_t *cfg);

/* Creates a bus. `cfg` may be NULL (all defaults); it is copied.
 * maxsize < 1 (0 and negatives) is SC_EINVAL: *out stays NULL and nothing
 * is created. Returns SC_OK, SC_EINVAL or SC_ENOMEM. Thread: any. */
int sc_bus_create(const sc_bus_config_t *cfg, sc_bus_t **out);

/* Destroys the bus. Every subscription and owner must be destroyed first
 * (a subscription still registered is a caller bug: it is closed and
 * reported through the logger, but its memory remains the caller's).
 * NULL is a no-op. Thread: any, once nothing else uses the bus. */
void sc_bus_destroy(sc_bus_t *bus);

/* The queue bound per subscription (the config's maxsize). Thread: any. */
int sc_bus_maxsize(const sc_bus_t *bus);

/* Emits one change event into `e->scope`. Never blocks on a consumer.
 * *seq_out (optional) receives the seq assigned, or 0 when the scope was
 * not alive (no subscribers, held or remote presence entries, kept
 * history) and keeps no history (the emit is still counted; a scope
 * the history hook names is created and keeps the event). Returns SC_OK,
 * SC_EINVAL (no scope) or SC_ENOMEM (nothing emitted, no seq used). Thread:
 * any. */
int sc_bus_emit(sc_bus_t *bus, const sc_emit_t *e, uint64_t *seq_out);

/* A point in a scope's past: "I have seen everything up to seq in that
 * epoch". Without an epoch only seq 0 ("from the start") can recover. */
typedef struct sc_since {
    uint64_t seq;
    uint64_t epoch;
    bool has_epoch;
} sc_since_t;

typedef struct sc_sub_opts {
    const sc_conn_t *conn; /* optional; copied. Enables audience and
                              presence (join/leave) */
    bool echo;             /* deliver events whose origin is this conn's
                              session (default false: suppressed) */
    bool quiet;            /* do not receive join/leave/update of others */
    bool hidden;           /* not announced: no JOIN/LEAVE for it, left
                              out of presence and of first/last counts,
                              no sc_bus_presence_update (its conn still
                              serves audience and echo) */
    /* The conn resumes an earlier session (the embedder checked that it
     * may): when the scope holds a presence entry of the same session id
     * and user (held by sc_sub_destroy_hold, or still shown by a live
     * subscription whose connection has not been noticed gone), the new
     * subscription takes it over instead of joining: no JOIN, the entry's
     * connected-at is kept, a conn without meta keeps the entry's meta,
     * and a different meta is told to the others as one UPDATE (not to
     * the new subscription). A live subscription so taken over is
     * superseded: no longer shown, it leaves unannounced. Ignored for
     * hidden subscriptions and without a conn. Costs one scan of the
     * scope's subscribers, so only resuming conns should set it. */
    bool adopt;
    /* Optional: start from this point (sc_sub_recovered tells whether it
     * could): the kept events after it that the subscription wants
     * (audience, echo) come first, in seq order, then live ones. */
    const sc_since_t *since;
    sc_on_disconnect_fn on_disconnect; /* optional */
    void *on_disconnect_ud;
} sc_sub_opts_t;

/* Subscribes `owner` to `scope`. With a conn, the scope's other subscribers
 * (except quiet ones) get a JOIN event (first = the user's first
 * connection in the scope; anonymous users are always first). *seq_out
 * (optional) receives the scope's last seq at the moment of subscribing:
 * every event queued to the new subscription has a higher seq.
 * Returns SC_OK (new subscription in *out), SC_EINVAL or SC_ENOMEM.
 * Thread: any (usually the owner's). */
int sc_bus_subscribe(sc_bus_t *bus, const char *scope, sc_owner_t *owner,
                     const sc_sub_opts_t *opts, sc_sub_t **out,
                     uint64_t *seq_out);

/* Whether nothing after `since` is missing from `scope` now: its epoch is
 * since's (or since.seq is 0), since.seq is not above its seq, and it
 * keeps every event after since.seq (or none came). The rule of
 * sc_sub_opts_t.since, sc_sub_recover and sc_bus_history. */

/* A read of a scope's history (sc_bus_history). */
typedef struct sc_history_read {
    sc_event_t **events; /* references, seq order (sc_history_read_free) */
    size_t n;
    bool recovered; /* the rule above held; else no events */
    bool more;      /* kept events after the last one returned remain */
    bool exists;    /* the scope exists (else epoch and seq are 0) */
    uint64_t epoch; /* the scope's */
    uint64_t seq;   /* its last seq */
} sc_history_read_t;

/* Copies the references of up to `limit` kept events of `scope` after
 * `since` that `user_id` may see under their audience rule (NULL: only
 * events for everyone), when the rule above holds. Returns SC_OK,
 * SC_EINVAL or SC_ENOMEM (*out empty). Thread: any. */
int sc_bus_history(sc_bus_t *bus, const char *scope, const sc_since_t *since,
                   const char *user_id, size_t limit, sc_history_read_t *out);
/* Releases what sc_bus_history returned (zeroes it). Thread: any. */
void sc_history_read_free(sc_history_read_t *r);

/* Drops kept events older than their scope's max_age (and scopes left with
 * nothing). Returns how many left. Call it periodically (the server:
 * every second). Thread: any. */
size_t sc_bus_expire_history(sc_bus_t *bus);

/* Ends every subscription of `scope` (NULL: of all scopes) with `reason`
 * (SC_CLOSE_CLOSED or SC_CLOSE_SHUTDOWN): they are removed at once (no
 * leave events among them), their owners are woken, and each consumer still
 * drains what was queued before seeing the end. Held presence entries of
 * those scopes are dropped without a LEAVE, and their kept history (the
 * scope starts a new life, with a new epoch). Clears the drop-warning
 * throttle of those scopes. An unknown scope is a no-op. Returns the number
 * of subscriptions ended. Thread: any. */
size_t sc_bus_close(sc_bus_t *bus, const char *scope, int reason);

/* Ends the subscriptions of `user_id` in `scope` (NULL: in every scope) with
 * reason SC_CLOSE_KICKED; remaining subscribers get LEAVE events. The
 * user's held presence entries there leave at once too (not counted).
 * Returns the number of subscriptions ended. Thread: any. */
size_t sc_bus_close_user(sc_bus_t *bus, const char *user_id, const char *scope);

/* Replaces the meta of `sub`'s conn with `meta` (`len` bytes, copied;
 * NULL = none) and tells the scope's other subscribers, except quiet ones,
 * with one UPDATE event carrying the conn and its new meta (the updater
 * does not get it). Later presence snapshots and the subscription's LEAVE
 * carry the new meta. Under the scope's shard lock, so the UPDATE is
 * ordered with the scope's other events, joins and leaves. Only the meta
 * changes: session, user and connected-at stay. Returns SC_OK, SC_EINVAL
 * (no bus or sub, a subscription without a conn, or a hidden one: it has
 * no presence to update), SC_ECLOSED (the bus already ended the
 * subscription: nothing changed) or SC_ENOMEM (nothing changed).
 * Thread: owner (the only thread that changes a conn's meta). */
int sc_bus_presence_update(sc_bus_t *bus, sc_sub_t *sub, const void *meta,
                           size_t len);

/* Remote presence: entries of another bus (another node of a cluster,
 * identified by `node`), mirrored here so presence lists, join/leave and
 * the user-level first/last cover the whole cluster. A remote entry is
 * listed like a local one and counts for its user's first/last; it never
 * reaches the presence hook.
 *
 * sc_bus_remote_join adds node's entry conn->session_id in `scope` (JOIN
 * to the scope's subscribers, first when its user had no entry here), or,
 * when it is there already, marks it with `gen` and takes conn's meta
 * (UPDATE when it changed). sc_bus_remote_leave removes one (LEAVE, last
 * when it was its user's last entry). sc_bus_remote_drop removes every
 * entry of `node` marked with a gen below `below` (UINT64_MAX: all of
 * them), each with its LEAVE, and returns how many. Returns SC_OK, SC_EINVAL
 * or SC_ENOMEM (nothing changed, but a known entry's gen; its meta stays);
 * leaving an unknown entry is SC_OK. A scope with remote entries lives
 * (emits into it are sequenced); sc_bus_close drops them with the scope,
 * without LEAVE (the cluster closes the scope on every node).
 * Thread: any. */
int sc_bus_remote_join(sc_bus_t *bus, const char *scope, uint64_t node,
                       uint64_t gen, const sc_conn_t *conn);
int sc_bus_remote_leave(sc_bus_t *bus, const char *scope, uint64_t node,
                        const char *session_id);
size_t sc_bus_remote_drop(sc_bus_t *bus, uint64_t node, uint64_t below);

/* Calls fn(ud, scope, seq) for every scope alive with a seq above 0, one
 * shard lock at a time, with that lock held (quick, no calls into the
 * bus). The broker raises the cluster's seqs to these when it links, so
 * seqs keep one value on every node after an outage. Thread: any. */
void sc_bus_each_seq(sc_bus_t *bus,
                     void (*fn)(void *ud, const char *scope, uint64_t seq),
                     void *ud);

/* Calls fn for every local presence entry (shown subscriptions and held
 * entries; not remote ones), one shard lock at a time, with that lock
 * held (as the presence hook: quick, no calls into the bus). An entry
 * that joins or leaves meanwhile is either visited or reported by the
 * hook after its shard was visited. Thread: any. */
void sc_bus_each_presence(sc_bus_t *bus, sc_on_presence_fn fn, void *ud);

/* Announces the LEAVE of every held presence entry (sc_sub_destroy_hold)
 * whose grace has passed (by the bus clock), to the scope's others but
 * quiet ones; `last` counts held entries as the user's connections.
 * Returns the number of entries that left. Cheap (one atomic load) while
 * nothing is held; else one lock per shard. Call it periodically (the
 * server: every tick). Thread: any. */
size_t sc_bus_expire_held(sc_bus_t *bus);

/* Held presence entries now (over all scopes). Thread: any. */
uint64_t sc_bus_held(sc_bus_t *bus);

/* Presence snapshot: copies of the conn infos of `scope`'s live
 * subscribers that gave one and are not hidden (nor superseded), and of
 * its held entries, de-duplicated by value. *out is
 * a new array (free with sc_presence_free), NULL with *n = 0 for an unknown
 * scope. Returns SC_OK or SC_ENOMEM. Thread: any. */
int sc_bus_presence(sc_bus_t *bus, const char *scope, sc_conn_t **out,
                    size_t *n);
/* Frees a presence snapshot (NULL is a no-op). Thread: any. */
void sc_presence_free(sc_conn_t *list, size_t n);

/* The scope's last assigned seq; 0 when it has no subscribers.
 * Thread: any. */
uint64_t sc_bus_scope_seq(sc_bus_t *bus, const char *scope);

/* The scope's epoch (0: the scope is not alive here), and its last seq in
 * *seq_out (optional). The broker proposes it as the cluster's epoch of a
 * scope Redis has none for. Thread: any. */
uint64_t sc_bus_scope_epoch(sc_bus_t *bus, const char *scope,
                            uint64_t *seq_out);

typedef struct sc_bus_stats {
    uint64_t emitted;         /* every emit, with or without subscribers */
    uint64_t dropped;         /* per subscriber per dropped item */
    uint64_t subscribers;     /* live subscriptions over all scopes */
    uint64_t scopes;          /* scopes alive: with a subscriber, a held or
                                 remote presence entry, or kept history */
    uint64_t queued_bytes;    /* what the events held by queues cost (each
                                 event once; see max_queued_bytes) */
    uint64_t history_events;  /* events kept as history now */
    uint64_t history_bytes;   /* what they cost (history_max_bytes) */
    uint64_t history_scopes;  /* scopes keeping at least one */
    uint64_t history_evicted; /* events that left a history early, for
                                 the budget (ever) */
} sc_bus_stats_t;

/* Counters at one moment (each exact; read without stopping emitters).
 * Thread: any. */
void sc_bus_stats(sc_bus_t *bus, sc_bus_stats_t *out);

/* ---- owners ---------------------------------------------------------- */

/* wake: one of the owner's queues got an item or was closed. Called with a
 * bus lock held on the emitting/closing thread; must be quick, must not
 * block or call into the bus. */
typedef void (*sc_wake_fn)(void *ud);

/* Creates an owner. `wake` NULL gives a built-in condition variable for
 * sc_owner_wait(). Returns SC_OK or SC_ENOMEM. Thread: any. */
int sc_owner_create(sc_wake_fn wake, void *ud, sc_owner_t **out);

/* Destroys an owner with no subscriptions left. NULL is a no-op.
 * Thread: owner (no producer can reach an owner without subscriptions). */
void sc_owner_destroy(sc_owner_t *owner);

/* Bounds what the owner's queues may hold together: an event is dropped
 * for one of its subscriptions (drop-newest, counted and reported like a
 * full queue) when the owner holds events already and this one would take
 * their cost over `bytes` (an event larger than the budget still reaches
 * an owner whose queues are empty). The cost of an event is counted in
 * every queue holding it, so this bounds what one slow consumer keeps
 * alive. Emitters on different shards may each add one event past it at
 * the same moment. 0 (the default) = no budget and no accounting. Call
 * before the owner's first subscription. Thread: owner. */
void sc_owner_set_budget(sc_owner_t *owner, size_t bytes);

/* What the owner's queues hold now, in event cost (0 without a budget).
 * Thread: any (a snapshot). */
size_t sc_owner_queued_bytes(const sc_owner_t *owner);

/* Re-arms the wake: call it before draining. Wakes that happen after it are
 * delivered again. Thread: owner. */
void sc_owner_rearm(sc_owner_t *owner);

/* Blocks until the owner has been woken since the last re-arm, or until
 * `timeout_ms` passes (< 0: no limit). Returns SC_OK or SC_ETIMEDOUT.
 * Only for owners created without a wake callback (else SC_EINVAL).
 * Thread: owner. */
int sc_owner_wait(sc_owner_t *owner, int timeout_ms);

/* ---- subscriptions (consumer side) ---------------------------------- */

/* Takes the next item: a replayed one (sc_sub_opts_t.since,
 * sc_sub_recover) while any is left, then the queue's. On SC_OK *ev is a
 * new reference. *dropped
 * (optional) receives how many items were dropped for this subscription
 * right before this item; with SC_EAGAIN or SC_ECLOSED it receives those
 * dropped after the last item (a `dropped` notice to send now). Each drop is
 * reported exactly once.
 * Returns SC_OK, SC_EAGAIN (queue empty, still open) or SC_ECLOSED (closed
 * by the bus and drained: the end marker; it is returned again on every
 * later call). Thread: owner. */
int sc_sub_next(sc_sub_t *sub, sc_event_t **ev, uint32_t *dropped);

/* sc_sub_next, blocking up to `timeout_ms` (< 0: no limit) while the queue
 * is empty and open. Only for owners without a wake callback. Returns as
 * sc_sub_next, or SC_ETIMEDOUT. Thread: owner. */
int sc_sub_wait(sc_sub_t *sub, sc_event_t **ev, uint32_t *dropped,
                int timeout_ms);

/* Number of items queued now, replayed ones included. Thread: owner (a
 * snapshot elsewhere). */
size_t sc_sub_pending(const sc_sub_t *sub);

/* Hints the CPU to load what sc_sub_next() reads first (a consumer about
 * to read many subscriptions in a row). No effect on behaviour. Thread:
 * the owner. */
void sc_sub_prefetch(const sc_sub_t *sub);

/* Why the bus closed the subscription (SC_CLOSE_NONE while open). The
 * reason is set before the owner is woken. Thread: any. */
int sc_sub_close_reason(const sc_sub_t *sub);

/* The subscription's scope, its conn (a copy; NULL when none) and its
 * owner, fixed at subscribe time, except the conn's meta, which
 * sc_bus_presence_update replaces. Thread: any, while the subscription
 * lives; the conn's meta only on the owner's thread (the one that
 * replaces it). */
const char *sc_sub_scope(const sc_sub_t *sub);
const sc_conn_t *sc_sub_conn(const sc_sub_t *sub);
sc_owner_t *sc_sub_owner(const sc_sub_t *sub);
/* Whether the subscription is hidden (sc_sub_opts_t.hidden: no presence
 * of its own, so no sc_bus_presence_update). Thread: any. */
bool sc_sub_hidden(const sc_sub_t *sub);
/* The epoch of the subscription's scope (fixed while it is subscribed).
 * Thread: any. */
uint64_t sc_sub_epoch(const sc_sub_t *sub);
/* Whether the subscription's `since` could be honoured (false without
 * one). Thread: any, after subscribing. */
bool sc_sub_recovered(const sc_sub_t *sub);

/* Moves a live subscription back to `since` (a client that missed events:
 * a `dropped` notice): when the rule of sc_bus_history holds, everything
 * queued and not yet taken (and drops not yet reported) is discarded and
 * the kept events after since.seq that it wants are replayed before
 * later ones; else nothing changes. *recovered says which; *seq_out
 * (optional) receives the scope's last seq. Returns SC_OK, SC_EINVAL,
 * SC_ECLOSED (the bus ended it) or SC_ENOMEM (nothing changed).
 * Thread: owner. */
int sc_sub_recover(sc_sub_t *sub, const sc_since_t *since, bool *recovered,
                   uint64_t *seq_out);

/* Total items ever dropped for this subscription. Thread: any. */
uint64_t sc_sub_dropped_total(const sc_sub_t *sub);

/* Unsubscribes (if still subscribed: the scope's others get LEAVE and the
 * scope disappears with its last subscriber and held entry), releases
 * what is still queued, calls on_disconnect exactly once and frees the
 * subscription. NULL is a no-op. Thread: owner. */
void sc_sub_destroy(sc_sub_t *sub);

/* sc_sub_destroy for a subscription whose connection dropped: when the
 * bus has a presence grace and the subscription is still in its scope,
 * shown (a conn, not hidden, not superseded), its presence entry is not
 * announced as leaving but held in the scope (a copy of its conn) for
 * presence_grace seconds: still listed by sc_bus_presence and counted for
 * first/last, given no events. A later subscription with
 * sc_sub_opts_t.adopt of the same session and user takes it over without
 * a JOIN; else sc_bus_expire_held announces its LEAVE once the grace has
 * passed. Otherwise (or without memory for the copy) as sc_sub_destroy.
 * NULL is a no-op. Thread: owner. */
void sc_sub_destroy_hold(sc_sub_t *sub);

#endif
