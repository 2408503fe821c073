/* fuzz_config: cfg_load() on any file content.
 *
 * The input is written to one memfd, reused across runs, and loaded through
 * its /proc/self/fd path; a config that loads is then checked with
 * cfg_validate(). A failed load must leave the struct as it was (the
 * defaults) and explain itself in one NUL-terminated message; a successful
 * one must name its file. Both end with cfg_free(), so LeakSanitizer sees
 * anything lost. Does not look at the values read.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"
#include "config.h"


/* The memfd the input is written to, and its path; made on the first run. */
static int input_fd = -1;
static char input_path[64];

static void write_input(const uint8_t *data, size_t size)
{
	size_t done = 0;

	if (input_fd < 0) {
		input_fd = memfd_create("fuzz_config.ini", MFD_CLOEXEC);
		FUZZ_CHECK(input_fd >= 0);
		snprintf(input_path, sizeof(input_path), "/proc/self/fd/%d", input_fd);
	}
	FUZZ_CHECK(ftruncate(input_fd, 0) == 0);
	while (done < size) {
		ssize_t n = pwrite(input_fd, data + done, size - done, (off_t)done);

		FUZZ_CHECK(n > 0);
		done += (size_t)n;
	}
}

static void check_defaults(const struct cfg *c)
{
	FUZZ_CHECK(c->file == NULL);
	FUZZ_CHECK(c->db && strcmp(c->db, CFG_DEFAULT_DB) == 0);
	FUZZ_CHECK(c->nsources == 0 && c->sources == NULL);
}

static void check_loaded(const struct cfg *c)
{
	char err[512];
	int rc;

	FUZZ_CHECK(c->file && strcmp(c->file, input_path) == 0);
	for (size_t i = 0; i < c->nsources; i++)
		FUZZ_CHECK(c->sources[i].name && c->sources[i].url);
	err[0] = '\0';
	rc = cfg_validate(c, err, sizeof(err));
	FUZZ_CHECK(rc == 0 || (rc == -EINVAL && err[0] != '\0'));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cfg c;
	char err[512];
	int rc;

	write_input(data, size);
	cfg_init(&c);
	memset(err, 'x', sizeof(err));
	rc = cfg_load(input_path, &c, err, sizeof(err));
	FUZZ_CHECK(rc <= 0);
	if (rc == 0) {
		check_loaded(&c);
	} else {
		FUZZ_CHECK(memchr(err, '\0', sizeof(err)) != NULL && err[0] != '\0');
		check_defaults(&c);
	}
	cfg_free(&c);
	return 0;
}
