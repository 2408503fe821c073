/* Unit tests for reading lists: proxy lines, scraping of lines that are
 * not proxy lines (also records spread over several lines), counting and
 * sampling of what was skipped. */
#include "sources.h"
#include "testutil.h"

#include <stdlib.h>

struct seen {
	char uris[16][64];
	int n;
};

static int on_proxy(void *arg, size_t src, const struct proxy_addr *a)
{
	struct seen *s = arg;

	for (int i = 0; i < s->n; i++) {
		char uri[64];

		proxy_format_uri(a, uri, sizeof(uri));
		if (strcmp(uri, s->uris[i]) == 0)
			return 1;
	}
	if (s->n < 16)
		proxy_format_uri(a, s->uris[s->n++], sizeof(s->uris[0]));
	return 0;
}

static void read_text(const char *text, struct src_state *st, struct seen *s)
{
	struct cfg_source cs = { .name = "t", .url = "t", .proto = PROXY_HTTP };

	memset(s, 0, sizeof(*s));
	src_read_text(st, &cs, text, strlen(text), 0, on_proxy, s);
}

static void test_clean_list(void)
{
	struct src_state st = { 0 };
	struct seen s;

	read_text("# comment\n1.2.3.4:80\n\nsocks5://5.6.7.8:1080\n1.2.3.4:80\nnot a proxy\n",
		  &st, &s);
	CHECK_INT(s.n, 2);
	CHECK_INT(st.proxies, 2);
	CHECK_INT(st.invalid, 1);
	CHECK_INT(st.scraped, 0);
	CHECK_STR(st.sample[0], "not a proxy");
	CHECK(st.last_read > 0);
	src_state_clear(&st);
}

static void test_pretty_json(void)
{
	struct src_state st = { 0 };
	struct seen s;

	read_text("[\n  {\n    \"ip\": \"10.1.2.3\",\n    \"port\": 3128\n  },\n"
		  "  {\n    \"ip\": \"10.4.5.6\",\n\n    \"port\": 8080\n  }\n]\n",
		  &st, &s);
	CHECK_INT(s.n, 2);
	CHECK_STR(s.uris[0], "http://10.1.2.3:3128");
	CHECK_STR(s.uris[1], "http://10.4.5.6:8080");
	CHECK_INT(st.proxies, 2);
	CHECK_INT(st.scraped, 2);
	src_state_clear(&st);
}

static void test_html_one_cell_a_line(void)
{
	struct src_state st = { 0 };
	struct seen s;

	read_text("<table>\n<tr>\n<td>10.9.8.7</td>\n<td>8000</td>\n</tr>\n"
		  "<tr><td>10.9.8.6</td><td>8001</td></tr>\n</table>\n",
		  &st, &s);
	CHECK_INT(s.n, 2);
	CHECK_INT(st.scraped, 2);
	CHECK(st.invalid >= 4); /* the markup lines are counted, not fatal */
	src_state_clear(&st);
}

static void test_nothing_found(void)
{
	struct src_state st = { 0 };
	struct seen s;

	read_text("<html>\nno proxies here 1.2.3.4:99999\n\x01\x02garbage\n</html>", &st, &s);
	CHECK_INT(s.n, 0);
	CHECK_INT(st.invalid, 4);
	CHECK_STR(st.sample[0], "<html>");
	CHECK_STR(st.sample[2], "??garbage");
	src_state_clear(&st);
}

/* protocol = socks5h: bare lines (and scraped ones) resolve names at the
 * proxy; a line that names its own scheme keeps it. */
static void test_remote_dns_source(void)
{
	struct cfg_source cs = { .name = "t", .url = "t", .proto = PROXY_SOCKS5,
				 .remote_dns = true };
	const char *text = "1.2.3.4:1080\nsocks5://5.6.7.8:1080\nhttp://9.9.9.9:80\n"
			   "<td>10.0.0.1</td><td>1081</td>\n";
	struct src_state st = { 0 };
	struct seen s = { .n = 0 };

	src_read_text(&st, &cs, text, strlen(text), 0, on_proxy, &s);
	CHECK_INT(s.n, 4);
	CHECK_STR(s.uris[0], "socks5h://1.2.3.4:1080");
	CHECK_STR(s.uris[1], "socks5://5.6.7.8:1080");
	CHECK_STR(s.uris[2], "http://9.9.9.9:80");
	CHECK_STR(s.uris[3], "socks5h://10.0.0.1:1081");
	src_state_clear(&st);
}

/* Credentials the proxy's protocol cannot carry: the line is invalid, and
 * nothing is picked out of it either. */
static void test_creds_too_long(void)
{
	char text[1200], user[301];
	struct src_state st = { 0 };
	struct seen s;

	memset(user, 'u', 300);
	user[300] = '\0';
	snprintf(text, sizeof(text),
		 "socks5://%s:p@1.2.3.4:1080\nsocks4://alice:secret@1.2.3.5:1080\n"
		 "socks5://alice@1.2.3.6:1080\nhttp://%.200s:p@1.2.3.7:80\n",
		 user, user);
	read_text(text, &st, &s);
	CHECK_INT(st.invalid, 3);
	CHECK_INT(st.proxies, 1);
	CHECK_INT(s.n, 1);
	CHECK_INT(st.scraped, 0);
	src_state_clear(&st);
}

int main(void)
{
	test_creds_too_long();
	test_remote_dns_source();
	test_clean_list();
	test_pretty_json();
	test_html_one_cell_a_line();
	test_nothing_found();
	return test_exit_code();
}
