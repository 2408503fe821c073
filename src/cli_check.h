/* cli_check: the `proxyfs check` command; see cli_check.c. */
#ifndef PROXYFS_CLI_CHECK_H
#define PROXYFS_CLI_CHECK_H

/* argv[0] is "check". Returns the process exit status: 0 when the lists
 * were checked, 2 for a usage or config error, 1 when checking failed. */
int check_main(int argc, char **argv);

#endif
