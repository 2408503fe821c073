/* store: the pool on disk, in SQLite; see store.h.
 *
 * One connection in WAL mode with synchronous=NORMAL, which survives a
 * killed process. Callers only append owned copies of their records to a
 * FIFO; the writer thread takes up to STORE_BATCH_MAX ops at a time and
 * applies them in one transaction with prepared statements. A failed
 * transaction is rolled back and its ops go back to the front of the FIFO,
 * in order, to be retried after a backoff. Loading is plain SELECTs on the
 * caller's thread. This file does not decide what is stored (the engine
 * does), nor keep removed proxies out of the pool.
 */
#include "store.h"
#include "thread.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define STORE_SCHEMA_VERSION 1
#define STORE_BATCH_MAX 5000	/* ops per transaction */
#define STORE_GATHER_MS 100	/* wait for more ops after the first */
#define STORE_QUEUE_MAX 1000000 /* past this, the oldest puts are dropped */
#define STORE_BACKOFF_MAX_S 30
#define STORE_BUSY_TIMEOUT_MS 5000

enum store_op_kind { STORE_OP_PUT, STORE_OP_DELETE, STORE_OP_MARK, STORE_OP_UNMARK };

/* One queued write, owning its strings (in text[]). */
struct store_op {
	struct store_op *next;
	enum store_op_kind kind;
	uint64_t seq;	      /* queueing order, from 1 */
	int64_t at;	      /* unix time queued: 'updated' and removed.at */
	struct store_rec rec; /* a put uses every field, the others only uri */
	char text[];
};

enum store_stmt_id { ST_BEGIN, ST_COMMIT, ST_PUT, ST_DELETE, ST_MARK, ST_UNMARK, ST_COUNT };

static const char *const store_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_PUT] = "INSERT INTO proxies(uri, proto, folders, state, latency_ms, last_checked,"
	       " successes, failures, fails_in_row, sources, exit_ip, anonymity, updated)"
	       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
	       " ON CONFLICT(uri) DO UPDATE SET proto = excluded.proto,"
	       " folders = excluded.folders, state = excluded.state,"
	       " latency_ms = excluded.latency_ms, last_checked = excluded.last_checked,"
	       " successes = excluded.successes, failures = excluded.failures,"
	       " fails_in_row = excluded.fails_in_row, sources = excluded.sources,"
	       " exit_ip = excluded.exit_ip, anonymity = excluded.anonymity,"
	       " updated = excluded.updated",
    [ST_DELETE] = "DELETE FROM proxies WHERE uri = ?1",
    [ST_MARK] = "INSERT INTO removed(uri, at) VALUES (?1, ?2) ON CONFLICT(uri) DO UPDATE SET at = excluded.at",
    [ST_UNMARK] = "DELETE FROM removed WHERE uri = ?1",
};

/* Version 1; STORE_SCHEMA_VERSION names it. */
static const char store_schema[] =
    "CREATE TABLE IF NOT EXISTS proxies(uri TEXT PRIMARY KEY, proto INT, folders INT,"
    " state INT, latency_ms INT, last_checked INT, successes INT, failures INT,"
    " fails_in_row INT, sources TEXT, exit_ip TEXT, anonymity INT, updated INT)"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS removed(uri TEXT PRIMARY KEY, at INT) WITHOUT ROWID;"
    "PRAGMA user_version = 1;";

struct store {
	/* Used by one thread at a time: the opener, then the thread that
	 * holds 'writing' (the writer thread once started). */
	sqlite3 *db;
	sqlite3_stmt *stmt[ST_COUNT];
	pthread_t thread;
	int lock_fd;	/* PATH.lock, flock()ed while open: one daemon per database */

	pthread_mutex_t lock; /* guards every field below */
	pthread_cond_t work;  /* the writer waits here: ops, flush or stop */
	pthread_cond_t done;  /* flushers wait here: an attempt finished */
	struct store_op *head, *tail;
	uint32_t count;		  /* ops in the FIFO */
	uint32_t in_flight;	  /* ops in the transaction being written */
	bool running;		  /* the writer thread is started */
	bool writing;		  /* a transaction is in progress */
	bool stop;		  /* store_close asks the writer to finish */
	uint64_t seq_last;	  /* seq of the newest op queued */
	uint64_t seq_attempted;	  /* every op up to here was written or failed once */
	uint64_t flush_target;	  /* a flusher waits for seq_attempted to reach this */
	int backoff_s;		  /* 0 after a success */
	struct timespec retry_at; /* CLOCK_MONOTONIC; no write before, unless flushing */
	uint64_t writes_total, errors_total;
	char error[256];
};

/* --- time --- */

static struct timespec ts_after_ms(const struct timespec *t, long ms)
{
	struct timespec r = *t;

	r.tv_sec += ms / 1000;
	r.tv_nsec += (ms % 1000) * 1000000L;
	if (r.tv_nsec >= 1000000000L) {
		r.tv_sec++;
		r.tv_nsec -= 1000000000L;
	}
	return r;
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* --- opening --- */

/* Creates the directories leading to path (mode 0700), like mkdir -p. */
static int store_make_parents(const char *path, char *err, size_t errlen)
{
	char *dir = strdup(path);
	int rc = 0;

	if (!dir)
		return -ENOMEM;
	for (char *p = strchr(dir + 1, '/'); p; p = strchr(p + 1, '/')) {
		*p = '\0';
		if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
			rc = -errno;
			snprintf(err, errlen, "%s: cannot create directory %s: %s", path, dir,
				 strerror(errno));
			break;
		}
		*p = '/';
	}
	free(dir);
	return rc;
}

/* Whether an existing file of this size starts as SQLite's files do (an
 * empty one is a new database). */
static bool store_looks_like_sqlite(int fd, off_t size)
{
	static const char magic[16] = "SQLite format 3";
	char head[sizeof(magic)];

	if (size == 0)
		return true;
	return pread(fd, head, sizeof(head), 0) == (ssize_t)sizeof(head) &&
	       memcmp(head, magic, sizeof(magic)) == 0;
}

/* Creates the file with mode 0600 before SQLite sees it (it holds proxy
 * credentials; SQLite gives its -wal and -shm files the same mode), and
 * narrows the mode of an existing one, but only once it is known to be a
 * database: a path naming some other file by mistake is refused untouched.
 * The descriptor is closed before SQLite opens the file: closing it later
 * would drop SQLite's locks. */
static int store_create_file(const char *path, char *err, size_t errlen)
{
	struct stat st;
	int fd, rc = 0;

	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return rc;
	}
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	    !store_looks_like_sqlite(fd, st.st_size)) {
		snprintf(err, errlen,
			 "%s: file is not a database (not SQLite); left as it was: give "
			 "[proxyfs] db another path",
			 path);
		close(fd);
		return -EINVAL;
	}
	if (fstat(fd, &st) == 0 && (st.st_mode & 077)) {
		log_warn("store: %s was readable by others; setting its mode to 0600", path);
		if (fchmod(fd, 0600) < 0) {
			rc = -errno;
			snprintf(err, errlen, "%s: chmod: %s", path, strerror(errno));
		}
	}
	close(fd);
	return rc;
}

/* One database serves one daemon: SQLite would let a second one in (WAL
 * readers and writers take turns), and both would then scan and write the
 * same pool. An flock() on PATH.lock (SQLite's own locks are fcntl() locks
 * on other files, so they never meet it) is held while the store is open,
 * and the file says who holds it. Returns the locked descriptor, or
 * -errno with a message naming the holder. */
static int store_claim(const char *path, char *err, size_t errlen)
{
	char lock[4096], holder[512];
	ssize_t n;
	int fd;

	if ((size_t)snprintf(lock, sizeof(lock), "%s.lock", path) >= sizeof(lock)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -ENAMETOOLONG;
	}
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		n = -errno;
		snprintf(err, errlen, "%s: %s", lock, strerror(errno));
		return (int)n;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;

		n = pread(fd, holder, sizeof(holder) - 1, 0);
		holder[n > 0 ? n : 0] = '\0';
		holder[strcspn(holder, "\n")] = '\0';
		if (e == EWOULDBLOCK)
			snprintf(err, errlen,
				 "%s: in use by another proxyfs (pid %s); one database serves one "
				 "daemon: stop that one, or give this one another [proxyfs] db",
				 path, holder[0] ? holder : "unknown");
		else
			snprintf(err, errlen, "%s: lock: %s", lock, strerror(e));
		close(fd);
		return -e;
	}
	return fd;
}

int store_set_owner(struct store *s, const char *note)
{
	char line[512];
	int n = snprintf(line, sizeof(line), "%ld%s%s\n", (long)getpid(), note ? ", " : "",
			 note ? note : "");

	if (n < 0 || (size_t)n >= sizeof(line))
		return -ENAMETOOLONG;
	if (ftruncate(s->lock_fd, 0) < 0 || pwrite(s->lock_fd, line, (size_t)n, 0) != n)
		return -errno;
	return 0;
}

/* Runs a statement expected to give one row and copies its first column
 * as text into buf. SQLite's message goes to err on failure. */
static int store_query_text(sqlite3 *db, const char *sql, char *buf, size_t len, char *err,
			    size_t errlen)
{
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

	if (rc == SQLITE_OK)
		rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		const char *text = (const char *)sqlite3_column_text(st, 0);

		snprintf(buf, len, "%s", text ? text : "");
		rc = SQLITE_OK;
	} else {
		snprintf(err, errlen, "%s", sqlite3_errmsg(db));
		rc = -EIO;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Refuses a file that is not SQLite, a newer schema, or a damaged one.
 * Returns the schema version found (0 for a new file) or -errno. */
static int store_check(struct store *s, const char *path, char *err, size_t errlen)
{
	char msg[200], val[200];
	long version;

	if (store_query_text(s->db, "PRAGMA user_version", val, sizeof(val), msg, sizeof(msg))) {
		snprintf(err, errlen, "%s: %s", path, msg);
		return -EIO;
	}
	version = strtol(val, NULL, 10);
	if (version > STORE_SCHEMA_VERSION || version < 0) {
		snprintf(err, errlen,
			 "%s: schema version %ld is not one this proxyfs knows (up to %d);"
			 " written by a newer proxyfs?",
			 path, version, STORE_SCHEMA_VERSION);
		return -EPROTO;
	}
	if (store_query_text(s->db, "PRAGMA quick_check", val, sizeof(val), msg, sizeof(msg))) {
		snprintf(err, errlen, "%s: integrity check failed: %s", path, msg);
		return -EIO;
	}
	if (strcmp(val, "ok") != 0) {
		snprintf(err, errlen, "%s: integrity check failed: %s", path, val);
		return -EIO;
	}
	return (int)version;
}

/* WAL and the schema. */
static int store_setup(struct store *s, const char *path, int version, char *err, size_t errlen)
{
	char msg[200], mode[32];
	char *emsg = NULL;

	sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);
	if (store_query_text(s->db, "PRAGMA journal_mode = WAL", mode, sizeof(mode), msg,
			     sizeof(msg))) {
		snprintf(err, errlen, "%s: %s", path, msg);
		return -EIO;
	}
	if (strcmp(mode, "wal") != 0)
		log_warn("store: %s: WAL mode refused, journal mode is %s", path, mode);
	if (sqlite3_exec(s->db, "PRAGMA synchronous = NORMAL", NULL, NULL, &emsg) != SQLITE_OK)
		goto out_fail;
	if (version == STORE_SCHEMA_VERSION)
		return 0;
	if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &emsg) != SQLITE_OK)
		goto out_fail;
	if (sqlite3_exec(s->db, store_schema, NULL, NULL, &emsg) != SQLITE_OK) {
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
		goto out_fail;
	}
	if (sqlite3_exec(s->db, "COMMIT", NULL, NULL, &emsg) != SQLITE_OK)
		goto out_fail;
	return 0;

out_fail:
	snprintf(err, errlen, "%s: %s", path, emsg ? emsg : sqlite3_errmsg(s->db));
	sqlite3_free(emsg);
	return -EIO;
}

static int store_prepare(struct store *s, const char *path, char *err, size_t errlen)
{
	for (int i = 0; i < ST_COUNT; i++) {
		if (sqlite3_prepare_v3(s->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &s->stmt[i], NULL) != SQLITE_OK) {
			snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
			return -EIO;
		}
	}
	return 0;
}

static void store_free_ops(struct store_op *op)
{
	struct store_op *next;

	for (; op; op = next) {
		next = op->next;
		free(op);
	}
}

/* Frees what store_open made; the writer thread is not running. */
static void store_release(struct store *s)
{
	for (int i = 0; i < ST_COUNT; i++)
		sqlite3_finalize(s->stmt[i]);
	if (s->db && sqlite3_close(s->db) != SQLITE_OK)
		log_err("store: close: %s", sqlite3_errmsg(s->db));
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* last: the database is closed */
	store_free_ops(s->head);
	pthread_cond_destroy(&s->done);
	pthread_cond_destroy(&s->work);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int store_init_sync(struct store *s)
{
	pthread_condattr_t attr;
	int rc;

	rc = pthread_condattr_init(&attr);
	if (rc)
		return -rc;
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->work, &attr);
	pthread_cond_init(&s->done, NULL);
	pthread_condattr_destroy(&attr);
	return 0;
}

/* Errors are only reported in err: the caller says what failed, once. */
struct store *store_open(const char *path, char *err, size_t errlen)
{
	struct store *s;
	int version, lock_fd;

	if (store_make_parents(path, err, errlen))
		return NULL;
	lock_fd = store_claim(path, err, errlen);
	if (lock_fd < 0)
		return NULL;
	if (store_create_file(path, err, errlen)) {
		close(lock_fd);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s || store_init_sync(s)) {
		snprintf(err, errlen, "%s: out of memory", path);
		free(s);
		close(lock_fd);
		return NULL;
	}
	s->lock_fd = lock_fd;
	store_set_owner(s, NULL);
	if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
	    SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
			 s->db ? sqlite3_errmsg(s->db) : "out of memory");
		goto out_release;
	}
	version = store_check(s, path, err, errlen);
	if (version < 0)
		goto out_release;
	if (store_setup(s, path, version, err, errlen) || store_prepare(s, path, err, errlen))
		goto out_release;
	return s;

out_release:
	store_release(s);
	return NULL;
}

/* --- loading --- */

static const char *store_col_text(sqlite3_stmt *st, int col)
{
	const char *t = (const char *)sqlite3_column_text(st, col);

	return t ? t : "";
}

static void store_row_to_rec(sqlite3_stmt *st, struct store_rec *r)
{
	r->uri = store_col_text(st, 0);
	r->proto = sqlite3_column_int(st, 1);
	r->folders = sqlite3_column_int(st, 2);
	r->state = sqlite3_column_int(st, 3);
	r->latency_ms = (uint32_t)sqlite3_column_int64(st, 4);
	r->last_checked = sqlite3_column_int64(st, 5);
	r->successes = (uint32_t)sqlite3_column_int64(st, 6);
	r->failures = (uint32_t)sqlite3_column_int64(st, 7);
	r->fails_in_row = (uint32_t)sqlite3_column_int64(st, 8);
	r->sources = store_col_text(st, 9);
	r->exit_ip = store_col_text(st, 10);
	r->anonymity = sqlite3_column_int(st, 11);
}

int store_load(struct store *s, void (*fn)(void *arg, const struct store_rec *r), void *arg)
{
	static const char sql[] =
	    "SELECT uri, proto, folders, state, latency_ms, last_checked, successes,"
	    " failures, fails_in_row, sources, exit_ip, anonymity FROM proxies";
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("store: load: %s", sqlite3_errmsg(s->db));
		return -EIO;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_rec r;

		store_row_to_rec(st, &r);
		fn(arg, &r);
	}
	if (rc != SQLITE_DONE)
		log_err("store: load: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_load_removed(struct store *s, void (*fn)(void *arg, const char *uri), void *arg)
{
	sqlite3_stmt *st;
	int rc;

	if (sqlite3_prepare_v2(s->db, "SELECT uri FROM removed", -1, &st, NULL) != SQLITE_OK) {
		log_err("store: load removed: %s", sqlite3_errmsg(s->db));
		return -EIO;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		fn(arg, store_col_text(st, 0));
	if (rc != SQLITE_DONE)
		log_err("store: load removed: %s", sqlite3_errmsg(s->db));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -EIO;
}

/* --- writing one batch (no lock held: only the 'writing' thread is here) --- */

/* Steps a statement to its end and resets it; SQLite's message into err. */
static int store_step(struct store *s, sqlite3_stmt *st, char *err, size_t errlen)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		int sys = sqlite3_system_errno(s->db);

		if (sys)
			snprintf(err, errlen, "%s (%s)", sqlite3_errmsg(s->db), strerror(sys));
		else
			snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
	}
	sqlite3_reset(st);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -EIO;
}

static int store_apply_put(struct store *s, const struct store_op *op, char *err, size_t errlen)
{
	const struct store_rec *r = &op->rec;
	sqlite3_stmt *st = s->stmt[ST_PUT];
	int rc = 0;

	rc |= sqlite3_bind_text(st, 1, r->uri, -1, SQLITE_STATIC);
	rc |= sqlite3_bind_int(st, 2, r->proto);
	rc |= sqlite3_bind_int(st, 3, r->folders);
	rc |= sqlite3_bind_int(st, 4, r->state);
	rc |= sqlite3_bind_int64(st, 5, r->latency_ms);
	rc |= sqlite3_bind_int64(st, 6, r->last_checked);
	rc |= sqlite3_bind_int64(st, 7, r->successes);
	rc |= sqlite3_bind_int64(st, 8, r->failures);
	rc |= sqlite3_bind_int64(st, 9, r->fails_in_row);
	rc |= sqlite3_bind_text(st, 10, r->sources, -1, SQLITE_STATIC);
	rc |= sqlite3_bind_text(st, 11, r->exit_ip, -1, SQLITE_STATIC);
	rc |= sqlite3_bind_int(st, 12, r->anonymity);
	rc |= sqlite3_bind_int64(st, 13, op->at);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "bind: %s", sqlite3_errmsg(s->db));
		return -EIO;
	}
	return store_step(s, st, err, errlen);
}

/* The statements keyed by uri alone (and removed.at for ST_MARK). */
static int store_apply_uri(struct store *s, enum store_stmt_id id, const struct store_op *op,
			   char *err, size_t errlen)
{
	sqlite3_stmt *st = s->stmt[id];

	if (sqlite3_bind_text(st, 1, op->rec.uri, -1, SQLITE_STATIC) != SQLITE_OK ||
	    (id == ST_MARK && sqlite3_bind_int64(st, 2, op->at) != SQLITE_OK)) {
		snprintf(err, errlen, "bind: %s", sqlite3_errmsg(s->db));
		return -EIO;
	}
	return store_step(s, st, err, errlen);
}

static int store_apply(struct store *s, const struct store_op *op, char *err, size_t errlen)
{
	switch (op->kind) {
	case STORE_OP_PUT:
		return store_apply_put(s, op, err, errlen);
	case STORE_OP_DELETE:
		return store_apply_uri(s, ST_DELETE, op, err, errlen);
	case STORE_OP_MARK:
		/* Marking removed also forgets the proxy. */
		if (store_apply_uri(s, ST_MARK, op, err, errlen))
			return -EIO;
		return store_apply_uri(s, ST_DELETE, op, err, errlen);
	case STORE_OP_UNMARK:
		return store_apply_uri(s, ST_UNMARK, op, err, errlen);
	}
	snprintf(err, errlen, "unknown op %d", (int)op->kind);
	return -EINVAL;
}

/* One transaction for the list; all or nothing. */
static int store_write_batch(struct store *s, const struct store_op *ops, char *err, size_t errlen)
{
	if (store_step(s, s->stmt[ST_BEGIN], err, errlen))
		return -EIO;
	for (const struct store_op *op = ops; op; op = op->next)
		if (store_apply(s, op, err, errlen))
			goto out_rollback;
	if (store_step(s, s->stmt[ST_COMMIT], err, errlen) == 0) {
		/* Keep the WAL small: a long-running daemon on a small disk
		 * must not fill it with a log SQLite never shrinks. Batches
		 * are few (one per STORE_GATHER_MS at most), so this is cheap. */
		sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
		return 0;
	}

out_rollback:
	/* Some errors (SQLITE_FULL, IOERR) have rolled back already. */
	if (!sqlite3_get_autocommit(s->db))
		sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
	/* The WAL may be what filled the disk: fold it into the database
	 * and give its space back before the retry. */
	sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
	return -EIO;
}

/* --- the queue (lock held) --- */

static void store_batch_written(struct store *s, struct store_op *batch, struct store_op *last,
				uint32_t n)
{
	if (s->seq_attempted < last->seq)
		s->seq_attempted = last->seq;
	s->writes_total += n;
	if (s->error[0])
		log_info("store: writing again (%u ops queued)", s->count);
	s->error[0] = '\0';
	s->backoff_s = 0;
	store_free_ops(batch);
}

/* The batch goes back to the front, in order; everything queued now
 * counts as failed once, so flushers return rather than wait out a full
 * disk. */
static void store_batch_failed(struct store *s, struct store_op *batch, struct store_op *last,
			       uint32_t n, const char *err)
{
	struct timespec now;

	last->next = s->head;
	s->head = batch;
	if (!s->tail)
		s->tail = last;
	s->count += n;
	s->errors_total++;
	s->seq_attempted = s->seq_last;
	s->backoff_s = s->backoff_s ? s->backoff_s * 2 : 1;
	if (s->backoff_s > STORE_BACKOFF_MAX_S)
		s->backoff_s = STORE_BACKOFF_MAX_S;
	clock_gettime(CLOCK_MONOTONIC, &now);
	s->retry_at = ts_after_ms(&now, s->backoff_s * 1000L);
	if (strcmp(s->error, err) != 0)
		log_err("store: write failed: %s (%u ops kept, retrying)", err, s->count);
	snprintf(s->error, sizeof(s->error), "%s", err);
}

/* Takes up to STORE_BATCH_MAX ops off the front and writes them with the
 * lock dropped. Called with the lock held and a non-empty queue; returns
 * with it held. */
static int store_write_some(struct store *s)
{
	struct store_op *batch = s->head, *last = s->head;
	uint32_t n = 1;
	char err[256] = "";
	int rc;

	while (last->next && n < STORE_BATCH_MAX) {
		last = last->next;
		n++;
	}
	s->head = last->next;
	if (!s->head)
		s->tail = NULL;
	last->next = NULL;
	s->count -= n;
	s->in_flight = n;
	s->writing = true;
	pthread_mutex_unlock(&s->lock);

	rc = store_write_batch(s, batch, err, sizeof(err));

	pthread_mutex_lock(&s->lock);
	s->writing = false;
	s->in_flight = 0;
	if (rc == 0)
		store_batch_written(s, batch, last, n);
	else
		store_batch_failed(s, batch, last, n, err);
	pthread_cond_broadcast(&s->done);
	return rc;
}

/* Makes room past STORE_QUEUE_MAX by dropping the oldest put; removals
 * are never dropped. Returns false when op itself is the put to drop. */
static bool store_make_room(struct store *s, const struct store_op *op)
{
	struct store_op *prev = NULL, *cur;

	for (cur = s->head; cur && cur->kind != STORE_OP_PUT; cur = cur->next)
		prev = cur;
	if (!cur && op->kind != STORE_OP_PUT)
		return true;
	if (strncmp(s->error, "queue full", 10) != 0)
		log_err("store: queue full (%u ops): dropping the oldest puts", s->count);
	snprintf(s->error, sizeof(s->error), "queue full (%u ops): oldest puts dropped", s->count);
	s->errors_total++;
	if (!cur)
		return false;
	if (prev)
		prev->next = cur->next;
	else
		s->head = cur->next;
	if (s->tail == cur)
		s->tail = prev;
	s->count--;
	free(cur);
	return true;
}

static void store_append(struct store *s, struct store_op *op)
{
	pthread_mutex_lock(&s->lock);
	if (s->count >= STORE_QUEUE_MAX && !store_make_room(s, op)) {
		free(op);
		goto out_unlock;
	}
	op->seq = ++s->seq_last;
	if (s->tail)
		s->tail->next = op;
	else
		s->head = op;
	s->tail = op;
	s->count++;
	/* The writer is woken when work appears and when a batch is full;
	 * between those it is gathering on a timer. */
	if (s->count == 1 || s->count == STORE_BATCH_MAX)
		pthread_cond_signal(&s->work);
out_unlock:
	pthread_mutex_unlock(&s->lock);
}

/* An owned copy of r (for kinds other than a put, only its uri). */
static struct store_op *store_op_new(enum store_op_kind kind, const struct store_rec *r)
{
	const char *sources = r->sources ? r->sources : "";
	const char *exit_ip = r->exit_ip ? r->exit_ip : "";
	size_t lu = strlen(r->uri) + 1, ls = strlen(sources) + 1, li = strlen(exit_ip) + 1;
	struct store_op *op = malloc(sizeof(*op) + lu + ls + li);
	char *p;

	if (!op)
		return NULL;
	op->next = NULL;
	op->kind = kind;
	op->seq = 0;
	op->at = (int64_t)time(NULL);
	op->rec = *r;
	p = op->text;
	op->rec.uri = memcpy(p, r->uri, lu);
	op->rec.sources = memcpy(p + lu, sources, ls);
	op->rec.exit_ip = memcpy(p + lu + ls, exit_ip, li);
	return op;
}

static int store_queue(struct store *s, enum store_op_kind kind, const struct store_rec *r)
{
	struct store_op *op;

	if (!r || !r->uri)
		return -EINVAL;
	op = store_op_new(kind, r);
	if (!op)
		return -ENOMEM;
	store_append(s, op);
	return 0;
}

int store_put(struct store *s, const struct store_rec *r)
{
	return store_queue(s, STORE_OP_PUT, r);
}

int store_delete(struct store *s, const char *uri)
{
	return store_queue(s, STORE_OP_DELETE, &(struct store_rec){.uri = uri});
}

int store_mark_removed(struct store *s, const char *uri)
{
	return store_queue(s, STORE_OP_MARK, &(struct store_rec){.uri = uri});
}

int store_unmark_removed(struct store *s, const char *uri)
{
	return store_queue(s, STORE_OP_UNMARK, &(struct store_rec){.uri = uri});
}

/* --- the writer thread --- */

static bool store_flushing(const struct store *s)
{
	return s->flush_target > s->seq_attempted;
}

/* Returns (lock held) when there is something to do: stop, a flush, a
 * full batch, or ops that waited STORE_GATHER_MS (and the backoff). */
static void store_wait_for_work(struct store *s)
{
	struct timespec now, until = {0};
	bool gathering = false;

	while (!s->stop && !store_flushing(s)) {
		if (!s->head) {
			gathering = false;
			pthread_cond_wait(&s->work, &s->lock);
			continue;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (s->backoff_s && ts_before(&now, &s->retry_at)) {
			pthread_cond_timedwait(&s->work, &s->lock, &s->retry_at);
			continue;
		}
		if (s->count >= STORE_BATCH_MAX)
			return;
		if (!gathering) {
			until = ts_after_ms(&now, STORE_GATHER_MS);
			gathering = true;
		} else if (!ts_before(&now, &until)) {
			return;
		}
		pthread_cond_timedwait(&s->work, &s->lock, &until);
	}
}

/* Once stopping, the writer writes until the queue is empty or a write
 * fails; store_close reports what is left. */
static void *store_writer_main(void *arg)
{
	struct store *s = arg;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		store_wait_for_work(s);
		if (s->writing) {
			/* A flush before store_start is still writing. */
			pthread_cond_wait(&s->done, &s->lock);
			continue;
		}
		if (s->head) {
			if (store_write_some(s) && s->stop)
				break;
			continue;
		}
		if (s->stop)
			break;
		/* A flush found nothing left to write. */
		s->seq_attempted = s->seq_last;
		pthread_cond_broadcast(&s->done);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int store_start(struct store *s)
{
	int rc;

	pthread_mutex_lock(&s->lock);
	if (s->running) {
		rc = -EALREADY;
		goto out_unlock;
	}
	rc = -thread_start(&s->thread, NULL, store_writer_main, s);
	s->running = rc == 0;
	if (rc)
		log_err("store: cannot start the writer thread: %s", strerror(-rc));
out_unlock:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* Without a writer thread (not started), the caller writes itself. */
void store_flush(struct store *s)
{
	uint64_t target;

	pthread_mutex_lock(&s->lock);
	target = s->seq_last;
	if (s->running && s->flush_target < target) {
		s->flush_target = target;
		pthread_cond_signal(&s->work);
	}
	while (s->seq_attempted < target) {
		if (s->running || s->writing)
			pthread_cond_wait(&s->done, &s->lock);
		else if (s->head)
			store_write_some(s);
		else
			s->seq_attempted = s->seq_last;
	}
	pthread_mutex_unlock(&s->lock);
}

void store_close(struct store *s)
{
	bool running;

	if (!s)
		return;
	store_flush(s);
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	running = s->running;
	pthread_cond_signal(&s->work);
	pthread_mutex_unlock(&s->lock);
	if (running)
		pthread_join(s->thread, NULL);
	if (s->count)
		log_err("store: %u writes lost at close: %s", s->count, s->error);
	store_release(s);
}

void store_get_status(struct store *s, struct store_status *out)
{
	pthread_mutex_lock(&s->lock);
	out->writes_total = s->writes_total;
	out->errors_total = s->errors_total;
	out->queued = s->count + s->in_flight;
	snprintf(out->error, sizeof(out->error), "%s", s->error);
	pthread_mutex_unlock(&s->lock);
}
