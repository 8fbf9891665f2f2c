/*
 * Disk tier storage (proxy/cache/disk.c): one file per cached object under a
 * hashed fan-out, plus the persistent invalidation-rule log. This layer knows
 * nothing about HTTP: a key, an opaque metadata blob (the engine's serialized
 * status/headers/freshness) and body bytes.
 *
 * Every function blocks on disk I/O: the cache engine calls them from its I/O
 * threads, never from an event loop. They are thread-safe for different keys;
 * the only shared mutable state is the store's byte/entry accounting, the
 * renames/unlinks of final names and the rule log, all behind one mutex.
 * A disk_writer or disk_entry is used by one thread at a time.
 *
 * Layout of the cache directory:
 *   LOCK                      flock()ed for the store's lifetime: one process per directory
 *   VERSION                   "shield-disk-cache 1\n"; a non-empty directory without it is
 *                             refused, so a mistyped path never gets its files deleted
 *   invalidations.log         the rule log (see disk_rules_append)
 *   a/bc/<32 hex>.obj         committed objects; the name is the first 128 bits of
 *                             SHA-256(key) in hex, a/bc its first 3 hex digits
 *   a/bc/<32 hex>.tmp.<pid>.<nonce>.<n>  bodies being written; never read; deleted by
 *                             disk_scan unless they belong to this store (its pid and nonce)
 * The fan-out is nginx's levels=1:2 (16 x 256 = 4096 leaf directories): ~25
 * files per directory at 100k objects, ~2.5k at 10M. Finer (256 x 256) leaves
 * 100k objects in ~50k nearly empty directories and doubles the scan's
 * system calls. Directories are created lazily by the first writer needing them.
 *
 * Object file format (integers little-endian):
 *   header, 72 bytes:
 *     0  magic "SHLDOBJ1"      8  u32 format version (1)   12 u32 flags (0)
 *     16 u32 key length        20 u32 metadata length      24 u64 body size
 *     32 u32 chunk size        36 u32 zero                 40 i64 stored-at (unix ms)
 *     48 md5[16] of the body   64 u32 zero
 *     68 u32 header CRC-32 (zlib) over key, metadata, then header bytes 0..67
 *   key bytes, metadata bytes, body bytes,
 *   trailer: u32 CRC-32 per body chunk (the last chunk may be short; none for an
 *     empty body), u32 chunk count, u32 trailer CRC-32 over the CRC table and the
 *     count, seeded with the header CRC (so a trailer belongs to its header),
 *     then the end magic "SHLDEND1".
 * The body size is only known at commit (chunked origin responses have no
 * Content-Length): the temp file starts with a zeroed header that commit
 * overwrites with pwrite at offset 0, after appending the trailer.
 * A file is valid only if its size is exactly 72 + key + metadata + body +
 * 4 * chunks + 16 and every magic, version, length and CRC above checks out.
 *
 * Crash safety: a final name only ever appears through rename(tmp, final) of a
 * temp file that is complete, verified (length, MD5) and durable (fdatasync, or
 * a syncfs() of the filesystem covering a whole batch of temp files, before
 * any of the batch's renames: disk_commit_batch); rename is atomic, so a kill -9 (or power loss) at
 * any moment leaves under the final name either the previous object or the complete new one. Temp
 * files are never opened by readers and are deleted by the next disk_scan. If a bad file still
 * shows up under a final name (bit rot, a filesystem without ordering, tampering), the checks above
 * drop it at scan/open and the chunk CRCs catch bad body bytes on read; it is removed, never
 * served. Durability is weaker than correctness on purpose: removals and new fan-out directories
 * are not fsynced, so a power loss may bring back a removed object or lose a new one (a miss),
 * never produce wrong bytes. The rule log is fsynced per append because forgetting an invalidation
 * would serve content that was withdrawn.
 */
#ifndef SHIELD_CACHE_DISK_H
#define SHIELD_CACHE_DISK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define DISK_FORMAT_VERSION 1
/* Body chunk covered by one CRC; also the unit the engine should read in. */
#define DISK_CHUNK_SIZE (1u << 20)
/* Limits that keep a corrupt header from asking for huge allocations. */
#define DISK_MAX_KEY     (64u * 1024)
#define DISK_MAX_META    (1u << 20)
#define DISK_MAX_PATTERN 4096
/* Accounting granularity: files count as their size rounded up to this (a
 * filesystem block), so many tiny objects cannot overrun the cap unseen. */
#define DISK_BLOCK 4096

typedef struct disk_store disk_store;
typedef struct disk_writer disk_writer;
typedef struct disk_entry disk_entry;

/* Results; every failing call also leaves errno meaningful where a system call failed. */
typedef enum {
    DISK_OK = 0,
    DISK_ERR_IO = -1,       /* a system call failed (ENOSPC, EIO...); errno says which */
    DISK_ERR_NOTFOUND = -2, /* no committed object for this key */
    DISK_ERR_CORRUPT = -3,  /* the file failed validation; it has been removed */
    DISK_ERR_LENGTH = -4,   /* commit: body length differs from the expected size */
    DISK_ERR_MD5 = -5,      /* commit: body MD5 differs from the expected (ETag) MD5 */
    DISK_ERR_FULL = -6,     /* commit: refused by the byte cap (see disk_writer_commit) */
    DISK_ERR_INVALID = -7,  /* bad argument (empty or oversized key/metadata/pattern) */
} disk_rc;

/* Short name of a result ("io", "corrupt"...), for logs and metrics. */
const char *disk_rc_name(int rc);

/* What is known about a stored object without reading its body. */
typedef struct disk_info {
    uint64_t body_size;    /* body bytes */
    int64_t stored_at_ms;  /* wall clock (unix ms) at disk_writer_begin; times that decide
                              freshness or invalidation belong in the engine's metadata */
    unsigned char md5[16]; /* MD5 of the body, computed while writing */
    uint32_t chunk_size;   /* body bytes per CRC chunk (DISK_CHUNK_SIZE when written) */
    const void *meta;      /* the metadata blob given to disk_writer_begin */
    size_t meta_len;
    uint64_t footprint; /* bytes this file counts for in disk_used() */
} disk_info;

/* ---- store ---------------------------------------------------------------------------------- */

/*
 * Open (creating it and its parents if needed) the cache directory dir with a
 * cap of max_bytes. Takes an exclusive flock on dir/LOCK (a second store on the
 * same directory, in this or another process, fails) and writes dir/VERSION.
 * Refuses a non-empty directory without a Shield VERSION file, because
 * disk_scan deletes unknown files. Accounting starts at zero: call disk_scan
 * before any writer. On failure returns NULL with a message in err.
 */
disk_store *disk_open(const char *dir, uint64_t max_bytes, char *err, size_t errlen);
/* Release the lock and free the store. Every writer and entry must be finished first. */
void disk_close(disk_store *s);
/* Bytes of committed objects (each file's size rounded up to DISK_BLOCK). Temp
 * files being written are not counted. */
uint64_t disk_used(disk_store *s);
/* Number of committed objects. */
uint64_t disk_entry_count(disk_store *s);
/* What the file of an object (key, metadata and body of these sizes) will count
 * for in disk_used() once committed: the engine charges its eviction policy
 * exactly this, so the policy's budget and the store's cap agree. */
uint64_t disk_footprint(size_t keylen, size_t metalen, uint64_t body_size);
/* The cap given to disk_open. */
uint64_t disk_max_bytes(const disk_store *s);
/*
 * Turn fsync/syncfs (files before rename, directories after) off or on (default on).
 * Off is for tests and benchmarks only: kill -9 stays safe (the page cache
 * survives the process) but after a power loss a committed name may hold
 * zeroed or stale blocks, which disk_scan's checks then drop.
 */
void disk_set_fsync(disk_store *s, int on);

/* ---- start-up scan -------------------------------------------------------------------------- */

/* Called once per kept object; key and info (including info->meta) are valid
 * only during the call. With threads > 1 it runs on several threads at once. */
typedef void (*disk_scan_cb)(void *ud, const void *key, size_t keylen, const disk_info *info);

typedef struct disk_scan_stats {
    uint64_t kept;            /* objects reported to the callback */
    uint64_t kept_bytes;      /* their footprint (disk_used() after the scan) */
    uint64_t dropped_corrupt; /* object files that failed validation (deleted) */
    uint64_t dropped_temp;    /* temp files of interrupted writes (deleted) */
    uint64_t dropped_stray;   /* unknown files inside the fan-out directories (deleted) */
    uint64_t errors;          /* entries that could not be examined or deleted */
} disk_scan_stats;

/*
 * Rebuild the index at start: walk the fan-out (all 16 x 256 leaves, missing ones are empty),
 * validate every object from its header, key, metadata and trailer (never the body, so 100k objects
 * take seconds), report the good ones to cb and delete temp files, invalid objects (bad
 * magic/version/flags/CRC, size not exactly as the header says, name not matching the key's hash,
 * zero length) and stray files. Files outside the fan-out (LOCK, VERSION, the rule log) are left
 * alone. threads (0 or 1: the calling thread only; at most 64) scan leaf directories in parallel:
 * on a cold page cache the scan waits on one small random read per object, and SSDs serve many at
 * once; the engine's sharded index takes concurrent inserts. Within a directory files are opened in
 * inode order. Resets disk_used() and disk_entry_count() to zero at its start and counts each
 * leaf's objects when it scans that leaf; the caller evicts if the total is over the cap (e.g.
 * after the cap was lowered).
 *
 * Runs concurrently with writers, readers and removals (the engine serves
 * while it scans, see proxy/cache/persist.c): each leaf is scanned under a
 * lock that commits and removals in that leaf also take while a scan runs,
 * so the callback for a file happens before or after any rename or unlink of
 * that name, never between reading the file and reporting it; objects in a
 * leaf not scanned yet are counted by the scan, later ones by commit and
 * removal. Temp files of this store are kept. Not concurrently with another
 * disk_scan of the same store.
 *
 * Test hook: the environment variable SHIELD_TEST_SCAN_DELAY_US makes the
 * scan sleep that many microseconds after each kept object (a slow disk), so
 * tests can observe requests arriving during the scan. Not for production.
 *
 * stats may be NULL. Returns DISK_OK or DISK_ERR_IO when the top directory
 * cannot be read (nothing is then counted).
 */
int disk_scan(disk_store *s, unsigned threads, disk_scan_cb cb, void *ud, disk_scan_stats *stats);

/* Make a running disk_scan stop after the leaves it is scanning (at close). */
void disk_scan_cancel(disk_store *s);

/* Progress of the current or last scan, readable from any thread. */
typedef struct disk_scan_state {
    int running;          /* a disk_scan is in progress */
    uint64_t leaves_done; /* fan-out leaves finished, of `leaves` */
    uint64_t leaves;
    uint64_t objects; /* objects kept so far */
    uint64_t bytes;   /* their footprint */
} disk_scan_state;
void disk_scan_progress(disk_store *s, disk_scan_state *out);

/*
 * 1 while a scan runs and has not finished key's leaf yet: an object for key
 * may be on disk without having been reported. Then disk_open_entry finds it
 * directly (by the key's hash). Cheap: one SHA-256 of the key while scanning,
 * one atomic load otherwise.
 */
int disk_scan_pending(disk_store *s, const void *key, size_t keylen);

/* ---- writing -------------------------------------------------------------------------------- */

/*
 * Start writing an object: creates a/bc/<hash>.tmp.<pid>.<n> (O_EXCL) and
 * writes a placeholder header, the key and meta. Nothing is visible to readers
 * until disk_writer_commit. Returns NULL with errno set (EINVAL for an empty
 * key, a key over DISK_MAX_KEY or meta over DISK_MAX_META; else the system
 * call's errno, e.g. ENOSPC).
 */
disk_writer *disk_writer_begin(disk_store *s, const void *key, size_t keylen, const void *meta,
                               size_t metalen);
/*
 * Append body bytes, updating the chunk CRCs and the body MD5. Returns 0, or
 * -1 with errno (ENOSPC, EIO...): the error is remembered, the temp file is
 * unlinked at once (freeing the space on a full disk) and every later append
 * and the commit fail; the writer must still be committed or aborted.
 */
int disk_writer_append(disk_writer *w, const void *data, size_t len);
/*
 * Commit in two steps, so several objects share their syncs (group commit):
 * disk_writer_finish checks the object (expected_size, expected_md5 as for
 * disk_writer_commit) and writes its trailer and real header: DISK_OK, the
 * object is complete but neither durable nor visible, and the writer is kept
 * for disk_commit_batch; any other result has freed the writer (temp file
 * removed).
 */
int disk_writer_finish(disk_writer *w, int64_t expected_size, const unsigned char *expected_md5);
/*
 * Publish n finished writers of store s together: make every temp file
 * durable (n <= 4: fdatasync each; more: one syncfs()), then rename each over
 * its final name (with the byte cap check and accounting of
 * disk_writer_commit), then make the renames durable (fsync of each distinct
 * directory, or one syncfs()). rcs[i] receives writer i's result (DISK_OK,
 * DISK_ERR_FULL, DISK_ERR_IO: a failed sync fails the whole batch, and the
 * objects already renamed are taken back). Frees every writer.
 */
void disk_commit_batch(disk_store *s, disk_writer **ws, size_t n, int *rcs);
/*
 * Finish and publish one object (disk_writer_finish + a batch of one). expected_size is the
 * Content-Length (-1 when unknown); expected_md5 the 16-byte MD5 from a plain-MD5 ETag (NULL when
 * the ETag is not one). On a mismatch nothing is published (DISK_ERR_LENGTH, DISK_ERR_MD5).
 * Otherwise writes the trailer and the real header, fsyncs the file, renames it over any previous
 * object of the same key and fsyncs the directory. Byte cap: the engine's eviction policy decides
 * what goes, so commit never evicts; it refuses (DISK_ERR_FULL) an object larger than the cap, and
 * any object while disk_used() is already over the cap. disk_used() therefore never exceeds the cap
 * by more than one object's footprint. DISK_ERR_FULL is the budget speaking, not the filesystem:
 * the engine treats it as an object not admitted. Frees the writer in every case, including errors
 * (temp file removed).
 */
int disk_writer_commit(disk_writer *w, int64_t expected_size, const unsigned char *expected_md5);
/* Drop an unfinished object: unlinks the temp file and frees the writer. */
void disk_writer_abort(disk_writer *w);

/* ---- reading -------------------------------------------------------------------------------- */

/*
 * Open the committed object for key and validate it like disk_scan does (it
 * also loads the chunk CRC table). Returns DISK_OK with *out set,
 * DISK_ERR_NOTFOUND (no file, or the file holds another key whose hash
 * collides: 128 bits make that practically impossible, and it is then simply a
 * miss; a commit of this key would replace the other object), DISK_ERR_CORRUPT
 * (file removed) or DISK_ERR_IO. The entry keeps its own descriptor: it stays
 * readable even if the object is replaced or removed meanwhile.
 */
int disk_open_entry(disk_store *s, const void *key, size_t keylen, disk_entry **out);
/* Size, MD5, metadata... of an open entry; valid until disk_entry_close. */
const disk_info *disk_entry_info(const disk_entry *e);
/*
 * Read up to len body bytes at body offset off; returns the count (0 at or past
 * the end) or -1 with errno. Every chunk the range touches is read whole and
 * checked against its CRC, so read in DISK_CHUNK_SIZE-aligned pieces to avoid
 * reading more than returned (aligned whole chunks are read straight into buf).
 * A CRC mismatch, or a file shorter than its header claims, returns -1 with
 * errno EBADMSG after removing the file (if it is still the one under the
 * key's name): the engine drops its index entry; nothing bad was returned.
 */
ssize_t disk_read_body(disk_entry *e, uint64_t off, void *buf, size_t len);
/*
 * Read the whole body once, checking every chunk CRC and the stored MD5.
 * DISK_OK, DISK_ERR_CORRUPT (file removed) or DISK_ERR_IO.
 * Why: sendfile (disk_entry_fd) bypasses the chunk CRCs. The engine calls this
 * on an I/O thread the first time an object found by disk_scan is served by
 * sendfile in this process, and remembers it in its index; objects written by
 * this process were checked while written. The cost is one extra read of each
 * cold object per process lifetime (it also warms the page cache for the
 * sendfile); what it leaves unprotected is corruption appearing afterwards
 * while the process runs. Paths that read bytes (TLS, gzip) use
 * disk_read_body, which checks on every read.
 */
int disk_entry_verify(disk_entry *e);
/*
 * Read the whole body in consecutive pieces (the first call starts at byte 0,
 * each next one continues where the last ended), checked against the stored
 * MD5 alone: for a reader that holds every byte until the end anyway, one
 * read and one hash instead of disk_entry_verify then disk_read_body (two
 * reads, two CRC passes and the hash). DISK_OK; on the call that reaches the
 * end, DISK_ERR_CORRUPT (file removed) when the MD5 differs; DISK_ERR_IO;
 * DISK_ERR_INVALID past the end. Nothing read may be used before the call
 * that reaches the end returned DISK_OK.
 */
int disk_entry_read_seq(disk_entry *e, void *buf, size_t len);
/* The entry's read-only descriptor and the file offset of body byte 0, for
 * sendfile(sock, fd, &(off_t){body_off + pos}, n). Owned by the entry. */
int disk_entry_fd(const disk_entry *e, uint64_t *body_off);
/* Close the descriptor and free the entry. NULL is fine. */
void disk_entry_close(disk_entry *e);

/* ---- removal -------------------------------------------------------------------------------- */

/*
 * Remove key's object (eviction, invalidation, origin says gone). DISK_OK,
 * DISK_ERR_NOTFOUND or DISK_ERR_IO. Not fsynced: after a power loss a removed
 * object may come back, exactly as if the crash had happened before the call
 * (invalidation stays correct because its rules are persisted separately).
 */
int disk_remove(disk_store *s, const void *key, size_t keylen);

/*
 * Replace the metadata of key's object (e.g. headers refreshed by an origin
 * 304) by copying its body, verified chunk by chunk, into a new file committed
 * like any other. DISK_OK, DISK_ERR_NOTFOUND, DISK_ERR_CORRUPT, DISK_ERR_FULL,
 * DISK_ERR_INVALID or DISK_ERR_IO.
 */
int disk_rewrite_meta(disk_store *s, const void *key, size_t keylen, const void *meta,
                      size_t metalen);

/* ---- invalidation rules -----------------------------------------------------------------------
 */

/*
 * Append the rule (pattern, time) to dir/invalidations.log and fsync it before
 * returning DISK_OK (DISK_ERR_INVALID for a pattern over DISK_MAX_PATTERN
 * bytes, DISK_ERR_IO). The meaning of time is the engine's (e.g. unix ms of the
 * invalidation: entries stored before it are invalid).
 * Line format: "<crc32 as 8 hex> <time> <pattern>\n", the CRC over
 * "<time> <pattern>", the pattern with bytes <= 0x20, >= 0x7f and '%' written
 * as %XX. One write() per line; a line torn by kill -9 has no newline or a bad
 * CRC and is ignored by disk_rules_load, and the next append starts on a fresh
 * line so it cannot be glued to the torn one.
 */
int disk_rules_append(disk_store *s, const char *pattern, int64_t time);

/* Called once per intact rule, in append order; pattern is valid during the call. */
typedef void (*disk_rule_cb)(void *ud, const char *pattern, int64_t time);
/*
 * Replay the rule log. A missing log is empty. Torn or corrupt lines are
 * skipped and counted in *bad_lines (may be NULL). DISK_OK or DISK_ERR_IO.
 */
int disk_rules_load(disk_store *s, disk_rule_cb cb, void *ud, size_t *bad_lines);
/*
 * Atomically replace the log with exactly these n rules (temp file, fsync,
 * rename), so the engine can compact it by dropping rules older than anything
 * stored. Rules appended concurrently by another thread may be lost: call it
 * from the thread that appends. DISK_OK, DISK_ERR_INVALID or DISK_ERR_IO.
 */
int disk_rules_rewrite(disk_store *s, const char *const *patterns, const int64_t *times, size_t n);

#endif
