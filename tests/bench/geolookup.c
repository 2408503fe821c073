/* geolookup: what one geo lookup costs, for the benchmark's geo phase.
 *
 * Opens the databases as the daemon does (src/geo.c) and looks up COUNT
 * addresses of the simulator's kind (127.x.y.z, every octet 1..254, in the
 * order proxysim hands them out), ROUNDS times over, on one thread. Prints
 * one line: lookups, the thread's CPU seconds and the wall seconds, lookups
 * per CPU second, and how many found a country and a network (so a
 * database that maps none of them shows). The CPU time is the figure to
 * trust on a busy machine: the wall time also counts other processes.
 *
 *   geolookup COUNTRY_DB ASN_DB COUNT ROUNDS
 */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>

#include "geo.h"

#define OCTETS 254u

static double seconds(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The simulator's address of proxy i (tests/sim/proxysim.c), network order. */
static uint32_t sim_addr(uint32_t i)
{
	uint32_t z = i % OCTETS + 1, y = i / OCTETS % OCTETS + 1;
	uint32_t x = i / (OCTETS * OCTETS) + 1;

	return htonl(127u << 24 | x << 16 | y << 8 | z);
}

int main(int argc, char **argv)
{
	struct geo_result r;
	unsigned long count, rounds, found_country = 0, found_asn = 0;
	double cpu0, wall0, cpu, wall;
	struct geo *g;
	char err[512];

	if (argc != 5) {
		fprintf(stderr, "usage: geolookup COUNTRY_DB ASN_DB COUNT ROUNDS\n");
		return 2;
	}
	count = strtoul(argv[3], NULL, 10);
	rounds = strtoul(argv[4], NULL, 10);
	if (!count || count > OCTETS * OCTETS * OCTETS || !rounds) {
		fprintf(stderr, "geolookup: COUNT 1..%u and ROUNDS at least 1\n",
			OCTETS * OCTETS * OCTETS);
		return 2;
	}
	g = geo_new(argv[1], argv[2], err, sizeof(err));
	if (!g) {
		fprintf(stderr, "geolookup: %s\n", err);
		return 1;
	}
	cpu0 = seconds(CLOCK_THREAD_CPUTIME_ID);
	wall0 = seconds(CLOCK_MONOTONIC);
	for (unsigned long k = 0; k < rounds; k++) {
		for (uint32_t i = 0; i < count; i++) {
			uint32_t a = sim_addr(i);

			geo_lookup(g, AF_INET, (const uint8_t *)&a, &r);
			found_country += r.country[0] != '\0';
			found_asn += r.asn != 0;
		}
	}
	cpu = seconds(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	wall = seconds(CLOCK_MONOTONIC) - wall0;
	printf(
	    "lookups %lu cpu_s %.6f wall_s %.6f per_cpu_s %.0f found_country %lu found_asn %lu\n",
	    count * rounds, cpu, wall, cpu > 0 ? (double)(count * rounds) / cpu : 0.0,
	    found_country, found_asn);
	geo_free(g);
	return 0;
}
