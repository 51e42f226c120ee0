/*
 * transport: listeners, TLS, HTTP limits and the event-loop threads.
 *
 * Every configured thread runs its own libuv loop with its own listening sockets
 * (SO_REUSEPORT, so the kernel spreads connections), its own h2o context and its own
 * worker. The cleartext listener speaks HTTP/1.1 and h2c with prior knowledge; the
 * TLS listener offers h2 and http/1.1 by ALPN.
 */
#ifndef JOBGATE_TRANSPORT_H
#define JOBGATE_TRANSPORT_H

#include "config.h"

/*
 * Serves until SIGTERM or SIGINT, then stops accepting, lets requests in flight finish
 * (their Redis writes included; at most 10 s), and returns. SIGHUP reloads the config.
 * Returns 0, or 1 after logging why it could not start.
 */
int transport_serve(const struct config *config);

#endif
