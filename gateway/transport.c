/*
 * transport: sockets, TLS and threads; see transport.h.
 *
 * It owns the h2o global configuration, the TLS context, each thread's loop and
 * listeners, and the signal handling of the serving process.
 */
#include "transport.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gateway.h"
#include "log.h"

#define LISTEN_BACKLOG 1024
#define MAX_LISTENERS 2
#define DRAIN_POLL_MS 20
#define DRAIN_LIMIT_MS 10000

struct listener {
    uv_tcp_t handle;
    h2o_accept_ctx_t accept;
    int fd;
};

struct thread {
    pthread_t id;
    uv_loop_t loop;
    struct worker worker;
    struct listener listeners[MAX_LISTENERS];
    size_t listener_count;
    uv_async_t stop;
    uv_async_t reload;
    pthread_mutex_t pending_lock;
    const struct config *pending; /* a reloaded config not yet taken up, under pending_lock */
    uv_timer_t drain;
    uint64_t drain_deadline;
    size_t connections; /* accepted and not yet closed */
};

static const h2o_iovec_t alpn_protocols[] = {{H2O_STRLIT("h2")}, {H2O_STRLIT("http/1.1")}, {NULL}};

static SSL_CTX *tls_context_new(const struct config_tls_listener *tls)
{
    SSL_CTX *context = SSL_CTX_new(TLS_server_method());

    if (context == NULL)
        return NULL;
    SSL_CTX_set_min_proto_version(context, TLS1_2_VERSION);
    SSL_CTX_set_options(context, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(context, tls->certificate_file) != 1 ||
        SSL_CTX_use_PrivateKey_file(context, tls->key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(context) != 1) {
        char reason[256];
        ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
        log_message(LOG_ERROR, "tls", "cannot load %s and %s: %s", tls->certificate_file,
                    tls->key_file, reason);
        SSL_CTX_free(context);
        return NULL;
    }
    h2o_ssl_register_alpn_protocols(context, alpn_protocols);
    return context;
}

/*
 * Opens one listening socket on address. Each thread gets its own socket on the same
 * address; SO_REUSEPORT lets the kernel spread connections between them.
 */
static int open_listening_socket(const struct config_listener *address)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *found;
    char port[8];
    int fd, on = 1, error;

    snprintf(port, sizeof(port), "%u", (unsigned)address->port);
    error = getaddrinfo(address->host, port, &hints, &found);
    if (error != 0) {
        log_message(LOG_ERROR, "listen", "cannot resolve %s: %s", address->host,
                    gai_strerror(error));
        return -1;
    }
    fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
        bind(fd, found->ai_addr, found->ai_addrlen) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
        log_message(LOG_ERROR, "listen", "cannot listen on %s:%u: %s", address->host,
                    (unsigned)address->port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(found);
    return fd;
}

static void free_handle(uv_handle_t *handle)
{
    free(handle);
}

static void on_connection_closed(uv_handle_t *handle)
{
    struct thread *thread = handle->loop->data;

    thread->connections--;
    free(handle);
}

static void on_accept(uv_stream_t *server, int status)
{
    struct listener *listener = (struct listener *)server;
    uv_tcp_t *connection;
    h2o_socket_t *sock;

    if (status != 0)
        return;
    connection = malloc(sizeof(*connection));
    if (connection == NULL)
        return;
    uv_tcp_init(server->loop, connection);
    if (uv_accept(server, (uv_stream_t *)connection) != 0) {
        uv_close((uv_handle_t *)connection, free_handle);
        return;
    }
    uv_tcp_nodelay(connection, 1);
    ((struct thread *)server->loop->data)->connections++;
    sock = h2o_uv_socket_create((uv_stream_t *)connection, on_connection_closed);
    h2o_accept(&listener->accept, sock);
}

/* Stops the loop once every connection has closed, or at the drain deadline. */
static void on_drain_tick(uv_timer_t *timer)
{
    struct thread *thread = timer->data;

    if (thread->connections == 0 || uv_now(&thread->loop) >= thread->drain_deadline) {
        if (thread->connections > 0)
            log_message(LOG_WARN, "serve", "drain deadline: closing %zu connections",
                        thread->connections);
        uv_stop(&thread->loop);
    }
}

/*
 * Stops accepting and asks every connection to finish (HTTP/2 GOAWAY, HTTP/1.1 close
 * after the current response), so requests in flight, and their Redis writes, complete.
 */
static void on_stop(uv_async_t *async)
{
    struct thread *thread = async->data;

    for (size_t i = 0; i < thread->listener_count; i++)
        uv_close((uv_handle_t *)&thread->listeners[i].handle, NULL);
    thread->worker.draining = 1;
    h2o_context_request_shutdown(&thread->worker.http);
    thread->drain_deadline = uv_now(&thread->loop) + DRAIN_LIMIT_MS;
    uv_timer_init(&thread->loop, &thread->drain);
    thread->drain.data = thread;
    uv_timer_start(&thread->drain, on_drain_tick, 0, DRAIN_POLL_MS);
}

/* Takes up the config the signal thread left for this loop. */
static void on_reload(uv_async_t *async)
{
    struct thread *thread = async->data;
    const struct config *config;

    pthread_mutex_lock(&thread->pending_lock);
    config = thread->pending;
    thread->pending = NULL;
    pthread_mutex_unlock(&thread->pending_lock);
    if (config == NULL)
        return;
    if (gateway_worker_use_config(&thread->worker, config) != 0)
        log_message(LOG_ERROR, "reload", "out of memory: this thread keeps the old config");
    config_release(config);
}

static void *run_thread(void *data)
{
    struct thread *thread = data;

    /* The worker flushes this thread's log lines once per loop turn. */
    if (log_buffer_start() != 0)
        log_message(LOG_WARN, "serve", "out of memory: this thread's log lines go unbuffered");
    uv_run(&thread->loop, UV_RUN_DEFAULT);
    /* One more turn runs the close callbacks that free the worker's store. */
    gateway_worker_dispose(&thread->worker);
    uv_run(&thread->loop, UV_RUN_NOWAIT);
    log_buffer_stop();
    config_release(thread->pending);
    thread->pending = NULL;
    return NULL;
}

static int start_listening(struct thread *thread)
{
    for (size_t i = 0; i < thread->listener_count; i++) {
        struct listener *listener = &thread->listeners[i];
        uv_tcp_init(&thread->loop, &listener->handle);
        if (uv_tcp_open(&listener->handle, listener->fd) != 0 ||
            uv_listen((uv_stream_t *)&listener->handle, LISTEN_BACKLOG, on_accept) != 0) {
            log_message(LOG_ERROR, "listen", "cannot accept on a listening socket");
            return -1;
        }
    }
    return 0;
}

static int add_listener(struct thread *thread, const struct config_listener *address, SSL_CTX *tls,
                        h2o_globalconf_t *globalconf)
{
    struct listener *listener = &thread->listeners[thread->listener_count];

    listener->fd = open_listening_socket(address);
    if (listener->fd < 0)
        return -1;
    listener->accept.ctx = &thread->worker.http;
    listener->accept.hosts = globalconf->hosts;
    listener->accept.ssl_ctx = tls;
    thread->listener_count++;
    return 0;
}

static int thread_init(struct thread *thread, const struct config *config,
                       h2o_globalconf_t *globalconf, SSL_CTX *tls, struct gateway_shared *shared)
{
    uv_loop_init(&thread->loop);
    thread->loop.data = thread;
    h2o_context_init(&thread->worker.http, &thread->loop, globalconf);
    if (gateway_worker_init(&thread->worker, config, &thread->loop, shared) != 0)
        return -1;
    if (config->cleartext.host != NULL &&
        add_listener(thread, &config->cleartext, NULL, globalconf) != 0)
        return -1;
    if (tls != NULL && add_listener(thread, &config->tls.address, tls, globalconf) != 0)
        return -1;
    uv_async_init(&thread->loop, &thread->stop, on_stop);
    thread->stop.data = thread;
    uv_async_init(&thread->loop, &thread->reload, on_reload);
    thread->reload.data = thread;
    pthread_mutex_init(&thread->pending_lock, NULL);
    return start_listening(thread);
}

static void configure_http(h2o_globalconf_t *globalconf, const struct config *config)
{
    h2o_hostconf_t *host;
    h2o_pathconf_t *path;
    h2o_handler_t *handler;

    h2o_config_init(globalconf);
    globalconf->server_name = h2o_iovec_init(H2O_STRLIT("jobgate"));
    globalconf->max_request_entity_size = config->limits.http_body_cap;
    globalconf->http1.req_timeout = config->limits.request_timeout_ms;
    globalconf->http2.idle_timeout = config->limits.idle_timeout_ms;
    globalconf->handshake_timeout = config->limits.handshake_timeout_ms;
    /* After GOAWAY, HTTP/2 clients get this long to finish before h2o closes. */
    globalconf->http2.graceful_shutdown_timeout = DRAIN_LIMIT_MS / 2;

    host = h2o_config_register_host(globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    path = h2o_config_register_path(host, "/", 0);
    handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = gateway_on_request;
}

static void log_config_problem(void *data, const char *message)
{
    (void)data;
    log_message(LOG_ERROR, "config", "%s", message);
}

/*
 * Loads the config file again and hands it to every loop. A config that does not load,
 * or that changes what only a restart can (listeners, threads, limits, Redis), is
 * refused and the running one stays. Returns the config now served: *current, or the
 * new one, whose reference passes to the caller.
 */
static const struct config *reload(const struct config *current, struct thread *threads)
{
    struct config *next = config_load(current->path, log_config_problem, NULL);
    const char *reason;

    if (next == NULL) {
        log_message(LOG_ERROR, "config",
                    "reload refused: %s does not load (see the errors above); still "
                    "serving the previous config",
                    current->path);
        return current;
    }
    if (!config_reloadable(current, next, &reason)) {
        log_message(LOG_ERROR, "config",
                    "reload refused: \"%s\" changed, which needs a restart; "
                    "still serving the previous config",
                    reason);
        config_release(next);
        return current;
    }
    for (unsigned i = 0; i < current->threads; i++) {
        struct thread *thread = &threads[i];
        pthread_mutex_lock(&thread->pending_lock);
        config_release(thread->pending);
        config_retain(next);
        thread->pending = next;
        pthread_mutex_unlock(&thread->pending_lock);
        uv_async_send(&thread->reload);
    }
    log_message(LOG_INFO, "config", "reloaded %s: queues %zu, classes %zu, keys %zu", next->path,
                next->queue_count, next->class_count, next->auth.key_count);
    return next;
}

/* Serves signals until SIGTERM or SIGINT; SIGHUP reloads the config. */
static void wait_for_stop_signal(const sigset_t *signals, const struct config *config,
                                 struct thread *threads)
{
    const struct config *current = config;
    int signal_number;

    config_retain(current);
    for (;;) {
        if (sigwait(signals, &signal_number) != 0)
            continue;
        if (signal_number != SIGHUP)
            break;
        const struct config *served = reload(current, threads);
        if (served != current) {
            config_release(current);
            current = served;
        }
    }
    config_release(current);
    log_message(LOG_INFO, "signal", "%s received, draining", strsignal(signal_number));
}

int transport_serve(const struct config *config)
{
    static struct gateway_shared shared;
    static h2o_globalconf_t globalconf;
    struct thread *threads;
    SSL_CTX *tls = NULL;
    sigset_t signals;
    unsigned started = 0;

    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    configure_http(&globalconf, config);
    if (config->tls.address.host != NULL && (tls = tls_context_new(&config->tls)) == NULL)
        return 1;
    threads = calloc(config->threads, sizeof(*threads));
    if (threads == NULL || gateway_shared_init(&shared) != 0) {
        free(threads);
        return 1;
    }

    for (; started < config->threads; started++) {
        struct thread *thread = &threads[started];
        if (thread_init(thread, config, &globalconf, tls, &shared) != 0 ||
            pthread_create(&thread->id, NULL, run_thread, thread) != 0)
            break;
    }
    if (started == config->threads) {
        log_message(LOG_INFO, "serve", "serving: threads %u", config->threads);
        wait_for_stop_signal(&signals, config, threads);
    }

    for (unsigned i = 0; i < started; i++)
        uv_async_send(&threads[i].stop);
    for (unsigned i = 0; i < started; i++)
        pthread_join(threads[i].id, NULL);
    /*
     * The loops still hold their open connections and h2o contexts; the process exits
     * right after this, so they are left to it.
     */
    free(threads);
    gateway_shared_dispose(&shared);
    SSL_CTX_free(tls);
    if (started == config->threads)
        log_message(LOG_INFO, "serve", "stopped");
    return started == config->threads ? 0 : 1;
}
