/* test_store: the SQLite store, on real files in a temporary directory.
 *
 * Records written are read back field by field after a reopen; updates,
 * deletes and the removed list; a 20,000-record burst; files that must be
 * refused (junk, a newer schema, a damaged one); a disk that fails for a
 * while (a file-size limit) must lose nothing; and the file mode.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define MANY 20000

static char tmpdir[] = "/tmp/proxyfs-store-XXXXXX";

static void path_in_tmp(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- collecting what store_load gives back --- */

struct loaded {
	struct store_rec rec[16];
	int n;
	char *removed[16];
	int n_removed;
};

static void collect_cb(void *arg, const struct store_rec *r)
{
	struct loaded *l = arg;

	if (l->n == 16)
		return;
	l->rec[l->n] = *r;
	l->rec[l->n].uri = strdup(r->uri);
	l->rec[l->n].sources = strdup(r->sources);
	l->rec[l->n].exit_ip = strdup(r->exit_ip);
	l->n++;
}

static void collect_removed_cb(void *arg, const char *uri)
{
	struct loaded *l = arg;

	if (l->n_removed < 16)
		l->removed[l->n_removed++] = strdup(uri);
}

static void loaded_free(struct loaded *l)
{
	for (int i = 0; i < l->n; i++) {
		free((char *)l->rec[i].uri);
		free((char *)l->rec[i].sources);
		free((char *)l->rec[i].exit_ip);
	}
	for (int i = 0; i < l->n_removed; i++)
		free(l->removed[i]);
	memset(l, 0, sizeof(*l));
}

static const struct store_rec *loaded_find(const struct loaded *l, const char *uri)
{
	for (int i = 0; i < l->n; i++)
		if (strcmp(l->rec[i].uri, uri) == 0)
			return &l->rec[i];
	return NULL;
}

/* Opens path, loads everything, closes. */
static void load_all(const char *path, struct loaded *l)
{
	char err[256] = "";
	struct store *s = store_open(path, err, sizeof(err));

	memset(l, 0, sizeof(*l));
	CHECK(s != NULL);
	if (!s) {
		fprintf(stderr, "store_open: %s\n", err);
		return;
	}
	CHECK_INT(store_load(s, collect_cb, l), 0);
	CHECK_INT(store_load_removed(s, collect_removed_cb, l), 0);
	store_close(s);
}

static void check_same(const struct store_rec *got, const struct store_rec *want)
{
	CHECK(got != NULL);
	if (!got)
		return;
	CHECK_STR(got->uri, want->uri);
	CHECK_INT(got->proto, want->proto);
	CHECK_INT(got->folders, want->folders);
	CHECK_INT(got->state, want->state);
	CHECK_INT(got->latency_ms, want->latency_ms);
	CHECK_INT(got->last_checked, want->last_checked);
	CHECK_INT(got->successes, want->successes);
	CHECK_INT(got->failures, want->failures);
	CHECK_INT(got->fails_in_row, want->fails_in_row);
	CHECK_STR(got->sources, want->sources ? want->sources : "");
	CHECK_STR(got->exit_ip, want->exit_ip ? want->exit_ip : "");
	CHECK_INT(got->anonymity, want->anonymity);
}

static const struct store_rec rec_a = {
    .uri = "http://user:p%40ss@10.0.0.1:8080",
    .proto = 0,
    .folders = 1 | 2,
    .state = STORE_ALIVE,
    .latency_ms = 123,
    .last_checked = 1700000000,
    .successes = 7,
    .failures = 2,
    .fails_in_row = 0,
    .sources = "list1,list2",
    .exit_ip = "203.0.113.9",
    .anonymity = 3,
};
static const struct store_rec rec_b = {
    .uri = "socks5://[2001:db8::1]:1080",
    .proto = 3,
    .folders = 8,
    .state = STORE_DEAD,
    .latency_ms = 4294967295u,
    .last_checked = 4102444800LL,
    .successes = 0,
    .failures = 4000000000u,
    .fails_in_row = 9,
    .sources = "@control",
    .exit_ip = "",
    .anonymity = 0,
};
static const struct store_rec rec_c = {
    .uri = "socks4://127.0.0.1:1",
    .proto = 2,
    .state = STORE_UNKNOWN,
    .sources = NULL,
    .exit_ip = NULL,
};

static void test_roundtrip(const char *path)
{
	char err[256] = "", wal[512];
	struct store_status st;
	struct loaded l;
	struct stat sb;
	struct store *s;

	s = store_open(path, err, sizeof(err));
	CHECK(s != NULL);
	if (!s) {
		fprintf(stderr, "store_open: %s\n", err);
		return;
	}
	CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	snprintf(wal, sizeof(wal), "%s-wal", path);
	CHECK(stat(wal, &sb) == 0 && (sb.st_mode & 0777) == 0600);
	path_in_tmp(wal, sizeof(wal), "state/sub");
	CHECK(stat(wal, &sb) == 0 && (sb.st_mode & 0777) == 0700);
	CHECK_INT(store_start(s), 0);
	CHECK_INT(store_start(s), -EALREADY);
	CHECK_INT(store_put(s, &rec_a), 0);
	CHECK_INT(store_put(s, &rec_b), 0);
	CHECK_INT(store_put(s, &rec_c), 0);
	CHECK_INT(store_put(s, &(struct store_rec){.uri = NULL}), -EINVAL);
	store_flush(s);
	store_get_status(s, &st);
	CHECK_INT(st.writes_total, 3);
	CHECK_INT(st.errors_total, 0);
	CHECK_INT(st.queued, 0);
	CHECK_STR(st.error, "");
	store_close(s);

	load_all(path, &l);
	CHECK_INT(l.n, 3);
	check_same(loaded_find(&l, rec_a.uri), &rec_a);
	check_same(loaded_find(&l, rec_b.uri), &rec_b);
	check_same(loaded_find(&l, rec_c.uri), &rec_c);
	CHECK_INT(l.n_removed, 0);
	loaded_free(&l);
}

static void test_update_delete_remove(const char *path)
{
	struct store_rec a2 = rec_a;
	char err[256] = "";
	struct loaded l;
	struct store *s;

	a2.state = STORE_DEAD;
	a2.latency_ms = 0;
	a2.fails_in_row = 3;
	a2.sources = "list2";
	a2.exit_ip = "";
	s = store_open(path, err, sizeof(err));
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(store_start(s), 0);
	CHECK_INT(store_put(s, &a2), 0);
	CHECK_INT(store_delete(s, rec_c.uri), 0);
	CHECK_INT(store_delete(s, "http://never.stored:1"), 0);
	CHECK_INT(store_mark_removed(s, rec_b.uri), 0);
	CHECK_INT(store_mark_removed(s, rec_b.uri), 0);
	CHECK_INT(store_mark_removed(s, "http://10.9.9.9:3128"), 0);
	store_close(s);

	load_all(path, &l);
	CHECK_INT(l.n, 1);
	check_same(loaded_find(&l, rec_a.uri), &a2);
	CHECK_INT(l.n_removed, 2);
	loaded_free(&l);

	/* Unmarking lifts the mark only; the proxy stays forgotten until put. */
	s = store_open(path, err, sizeof(err));
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(store_start(s), 0);
	CHECK_INT(store_unmark_removed(s, rec_b.uri), 0);
	store_close(s);
	load_all(path, &l);
	CHECK_INT(l.n, 1);
	CHECK_INT(l.n_removed, 1);
	CHECK_STR(l.removed[0], "http://10.9.9.9:3128");
	loaded_free(&l);
}

/* --- many --- */

struct many {
	unsigned char seen[MANY];
	int n, bad;
};

static void many_rec(int i, char *uri, size_t len, struct store_rec *r)
{
	snprintf(uri, len, "http://10.%d.%d.%d:%d", i >> 16, (i >> 8) & 255, i & 255,
		 1000 + i % 50000);
	*r = (struct store_rec){.uri = uri,
				.proto = i % 4,
				.folders = 1 << (i % 4),
				.state = i % 3,
				.latency_ms = (uint32_t)i,
				.last_checked = 1700000000 + i,
				.successes = (uint32_t)i * 2,
				.failures = (uint32_t)i % 7,
				.fails_in_row = (uint32_t)i % 3,
				.sources = "big",
				.exit_ip = "198.51.100.1",
				.anonymity = i % 4};
}

static void many_cb(void *arg, const struct store_rec *r)
{
	struct many *m = arg;
	unsigned a, b, c, port;
	struct store_rec want;
	char uri[64];
	int i;

	m->n++;
	if (sscanf(r->uri, "http://10.%u.%u.%u:%u", &a, &b, &c, &port) != 4) {
		m->bad++;
		return;
	}
	i = (int)(a << 16 | b << 8 | c);
	many_rec(i, uri, sizeof(uri), &want);
	if (i >= MANY || m->seen[i] || strcmp(r->uri, uri) != 0 ||
	    r->latency_ms != want.latency_ms || r->last_checked != want.last_checked ||
	    r->successes != want.successes || r->state != want.state ||
	    r->anonymity != want.anonymity || strcmp(r->sources, "big") != 0) {
		m->bad++;
		return;
	}
	m->seen[i] = 1;
}

static void test_many(const char *path)
{
	static struct many m;
	char err[256] = "", uri[64];
	struct store_status st;
	struct store_rec r;
	struct store *s;
	double t0, t1, t2;

	s = store_open(path, err, sizeof(err));
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(store_start(s), 0);
	t0 = now_s();
	for (int i = 0; i < MANY; i++) {
		many_rec(i, uri, sizeof(uri), &r);
		CHECK_INT(store_put(s, &r), 0);
	}
	t1 = now_s();
	store_flush(s);
	t2 = now_s();
	store_get_status(s, &st);
	CHECK_INT(st.writes_total, MANY);
	CHECK_INT(st.queued, 0);
	printf("%d puts: queued in %.3f s, written %.3f s after\n", MANY, t1 - t0, t2 - t1);
	CHECK(t2 - t1 < 10.0);
	store_close(s);

	s = store_open(path, err, sizeof(err));
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(store_load(s, many_cb, &m), 0);
	store_close(s);
	CHECK_INT(m.n, MANY);
	CHECK_INT(m.bad, 0);
}

/* Many threads put and flush at once; each flush covers its own puts. */
struct writer_arg {
	struct store *s;
	int id;
	int unwritten; /* ops not on disk after this thread's flush */
};

static void *writer_thread(void *p)
{
	struct writer_arg *w = p;
	struct store_status st;
	char uri[64];

	for (int i = 0; i < 500; i++) {
		snprintf(uri, sizeof(uri), "socks5://10.200.%d.%d:%d", w->id, i % 250, 2000 + i);
		store_put(w->s, &(struct store_rec){.uri = uri, .state = STORE_ALIVE});
		if (i % 100 == 99)
			store_flush(w->s);
	}
	store_flush(w->s);
	store_get_status(w->s, &st);
	w->unwritten = st.error[0] != '\0';
	return NULL;
}

static void count_cb(void *arg, const struct store_rec *r)
{
	(*(int *)arg)++;
}

static void test_threads(const char *path)
{
	struct writer_arg w[4];
	pthread_t t[4];
	char err[256] = "";
	struct store *s;
	int n = 0;

	s = store_open(path, err, sizeof(err));
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(store_start(s), 0);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct writer_arg){.s = s, .id = i};
		CHECK_INT(pthread_create(&t[i], NULL, writer_thread, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK_INT(w[i].unwritten, 0);
	}
	store_close(s);
	s = store_open(path, err, sizeof(err));
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(store_load(s, count_cb, &n), 0);
	CHECK_INT(n, 4 * 500);
	store_close(s);
}

/* Closing without ever starting the thread still writes the queue. */
static void test_no_thread(const char *path)
{
	char err[256] = "";
	struct loaded l;
	struct store *s = store_open(path, err, sizeof(err));

	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(store_put(s, &rec_a), 0);
	store_flush(s);
	CHECK_INT(store_put(s, &rec_b), 0);
	store_close(s);
	load_all(path, &l);
	CHECK_INT(l.n, 2);
	check_same(loaded_find(&l, rec_b.uri), &rec_b);
	loaded_free(&l);
}

/* --- refusing files --- */

static void expect_refused(const char *path, const char *what)
{
	char err[256] = "";
	struct store *s = store_open(path, err, sizeof(err));

	CHECK(s == NULL);
	store_close(s);
	printf("refused as expected: %s\n", err);
	CHECK(strstr(err, path) != NULL);
	CHECK(strstr(err, what) != NULL);
}

static void test_junk(void)
{
	struct stat st;
	char path[256];
	FILE *f;

	path_in_tmp(path, sizeof(path), "junk.db");
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	for (int i = 0; i < 200; i++)
		fputs("this is not a database, just some text\n", f);
	fclose(f);
	/* A file given by mistake keeps its mode: only a database is narrowed. */
	CHECK_INT(chmod(path, 0644), 0);
	expect_refused(path, "not a database");
	CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0644);
}

static int sql_exec(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	int rc = sqlite3_open(path, &db);

	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
	sqlite3_close(db);
	return rc;
}

static void test_newer_version(void)
{
	char path[256];

	path_in_tmp(path, sizeof(path), "newer.db");
	CHECK_INT(sql_exec(path, "CREATE TABLE t(x); PRAGMA user_version = 2;"), SQLITE_OK);
	expect_refused(path, "schema version 2");
}

/* A b-tree page overwritten with junk fails the quick check at open. */
static void test_damaged(const char *good)
{
	char path[256], cmd[600], junk[4096];
	int fd;

	path_in_tmp(path, sizeof(path), "damaged.db");
	snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", good, path);
	CHECK_INT(system(cmd), 0);
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0);
	if (fd < 0)
		return;
	memset(junk, 0x5a, sizeof(junk));
	CHECK(pwrite(fd, junk, sizeof(junk), 4096) == (ssize_t)sizeof(junk));
	close(fd);
	expect_refused(path, "");
}

static void integrity_text(const char *path, char *out, size_t len)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;

	snprintf(out, len, "(no answer)");
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		snprintf(out, len, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
}

static void test_integrity(const char *path)
{
	char res[256];

	integrity_text(path, res, sizeof(res));
	CHECK_STR(res, "ok");
}

/* --- a disk that fails for a while --- */

static void set_fsize_limit(rlim_t cur)
{
	struct rlimit rl;

	getrlimit(RLIMIT_FSIZE, &rl);
	rl.rlim_cur = cur;
	CHECK_INT(setrlimit(RLIMIT_FSIZE, &rl), 0);
}

/* A file-size limit makes every write to the database fail (EFBIG, root
 * or not); lifting it lets the writer's retry succeed, losing nothing. */
static void test_write_failure(const char *path)
{
	char err[256] = "", uri[64];
	struct store_status st;
	struct rlimit saved;
	struct store *s;
	struct many *m;
	double t0;

	signal(SIGXFSZ, SIG_IGN);
	getrlimit(RLIMIT_FSIZE, &saved);
	s = store_open(path, err, sizeof(err));
	CHECK(s != NULL);
	if (!s)
		return;
	CHECK_INT(store_start(s), 0);
	set_fsize_limit(512);
	for (int i = 0; i < 300; i++) {
		struct store_rec r;

		many_rec(i, uri, sizeof(uri), &r);
		store_put(s, &r);
	}
	store_flush(s);
	store_get_status(s, &st);
	printf("while failing: errors %llu, queued %u, error \"%s\"\n",
	       (unsigned long long)st.errors_total, st.queued, st.error);
	CHECK(st.errors_total >= 1);
	CHECK_INT(st.queued, 300);
	CHECK(st.error[0] != '\0');

	set_fsize_limit(saved.rlim_cur);
	t0 = now_s();
	do {
		usleep(50000);
		store_get_status(s, &st);
	} while (st.queued && now_s() - t0 < 10);
	printf("recovered after %.2f s\n", now_s() - t0);
	CHECK_INT(st.queued, 0);
	CHECK_STR(st.error, "");
	store_close(s);
	signal(SIGXFSZ, SIG_DFL);

	m = calloc(1, sizeof(*m));
	s = store_open(path, err, sizeof(err));
	CHECK(s != NULL && m != NULL);
	if (s && m)
		CHECK_INT(store_load(s, many_cb, m), 0);
	store_close(s);
	if (m) {
		CHECK_INT(m->n, 300);
		CHECK_INT(m->bad, 0);
	}
	free(m);
}

int main(void)
{
	char path[256];

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	/* Two missing directory levels: store_open makes them. */
	path_in_tmp(path, sizeof(path), "state/sub/proxyfs.db");
	test_roundtrip(path);
	test_update_delete_remove(path);
	test_integrity(path);
	test_damaged(path);

	path_in_tmp(path, sizeof(path), "many.db");
	test_many(path);
	test_integrity(path);

	path_in_tmp(path, sizeof(path), "threads.db");
	test_threads(path);
	path_in_tmp(path, sizeof(path), "nothread.db");
	test_no_thread(path);

	test_junk();
	test_newer_version();

	path_in_tmp(path, sizeof(path), "failing.db");
	test_write_failure(path);
	test_integrity(path);

	char cmd[300];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (test_failures == 0 && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
	return test_exit_code();
}
