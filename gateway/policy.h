/*
 * policy: who may enqueue what, where.
 *
 * Decides whether a verified principal may write to a queue (its tier or the queue
 * itself granted by a scope, its tenant allowed on the queue) and whether a class may
 * run there. Also owns the name patterns for queues and classes, which reach
 * dashboards unescaped and so are kept strict.
 *
 * Scopes: "tier:NAME" grants every queue of tier NAME and of the tiers the config
 * says NAME includes; "queue:NAME" grants one queue.
 */
#ifndef JOBGATE_POLICY_H
#define JOBGATE_POLICY_H

#include <stddef.h>

#include "auth.h"
#include "config.h"

#define POLICY_MAX_QUEUE_NAME 64
#define POLICY_MAX_CLASS_NAME 128
#define POLICY_MAX_TIER_NAME 64

enum policy_status {
    POLICY_OK = 0,
    POLICY_INSUFFICIENT_SCOPE, /* no scope grants the queue's tier or the queue */
    POLICY_TENANT_FORBIDDEN,   /* the tenant may not use the queue */
    POLICY_UNKNOWN_CLASS,      /* the class is not allowed on the queue */
};

/* Queue names: 1-64 of [a-z0-9_-], starting with a letter or digit. */
int policy_queue_name_valid(const char *name, size_t len);

/* Class names: Ruby constant paths such as "Billing::SendInvoice", at most 128 bytes. */
int policy_class_name_valid(const char *name, size_t len);

/* Tier names: 1-64 of [a-z0-9_-], starting with a letter. */
int policy_tier_name_valid(const char *name, size_t len);

/* Whether principal may enqueue to queue. */
enum policy_status policy_authorize(const struct config *config, const struct config_queue *queue,
                                    const struct principal *principal);

/* Whether class (not NUL-terminated) may be enqueued to queue. */
enum policy_status policy_class_allowed(const struct config_queue *queue, const char *class_name,
                                        size_t len);

#endif
