/* thread: the daemon's own threads (the engine, the store's writer, the
 * fetcher, lookups, the HTTP front, the gateway) start with every signal
 * blocked: signals are the main thread's, where FUSE handles them. */
#ifndef PROXYFS_THREAD_H
#define PROXYFS_THREAD_H

#include <pthread.h>

/* pthread_create(tid, attr, fn, arg) with every signal blocked in the new
 * thread, the caller's mask left as it was. 0 or pthread_create's error. */
int thread_start(pthread_t *tid, const pthread_attr_t *attr, void *(*fn)(void *), void *arg);

#endif
