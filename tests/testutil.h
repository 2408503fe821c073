/* testutil: the few macros the C unit tests share.
 *
 * A failed CHECK prints where and what, counts the failure and goes on; the
 * test's main returns test_exit_code() at the end.
 */
#ifndef PROXYFS_TESTUTIL_H
#define PROXYFS_TESTUTIL_H

#include <stdio.h>
#include <string.h>

static int test_failures;
static int test_checks;

#define CHECK(cond)                                                                     \
	do {                                                                            \
		test_checks++;                                                          \
		if (!(cond)) {                                                          \
			test_failures++;                                                \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                       \
	} while (0)

#define CHECK_INT(a, b)                                                                  \
	do {                                                                             \
		long long va_ = (long long)(a), vb_ = (long long)(b);                    \
		test_checks++;                                                           \
		if (va_ != vb_) {                                                        \
			test_failures++;                                                 \
			fprintf(stderr, "%s:%d: %s == %lld, expected %lld\n", __FILE__, __LINE__, \
				#a, va_, vb_);                                           \
		}                                                                        \
	} while (0)

#define CHECK_STR(a, b)                                                                  \
	do {                                                                             \
		const char *sa_ = (a), *sb_ = (b);                                       \
		test_checks++;                                                           \
		if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                             \
			test_failures++;                                                 \
			fprintf(stderr, "%s:%d: %s == \"%s\", expected \"%s\"\n", __FILE__,   \
				__LINE__, #a, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");     \
		}                                                                        \
	} while (0)

static inline int test_exit_code(void)
{
	printf("%d checks, %d failed\n", test_checks, test_failures);
	return test_failures ? 1 : 0;
}

#endif
