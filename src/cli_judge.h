/* cli_judge: the `proxyfs judge` command; see cli_judge.c. */
#ifndef PROXYFS_CLI_JUDGE_H
#define PROXYFS_CLI_JUDGE_H

/* argv[0] is "judge". Serves until SIGTERM/SIGINT. Returns the process exit
 * status: 0 after a signal (or --help), 2 for a usage error or an address
 * that does not parse or resolve, 1 when it cannot listen or serve. */
int judge_main(int argc, char **argv);

#endif
