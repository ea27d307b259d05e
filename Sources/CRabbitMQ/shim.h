// Thin C helpers over rabbitmq-c 0.11 for Integrator's AMQP connection.
// They exist because amqp_login is variadic and AMQP tables and properties are unions, which Swift calls awkwardly.
// Every function is called only from the one thread that owns the connection: rabbitmq-c is not thread-safe.
#ifndef INTEGRATOR_CRABBITMQ_SHIM_H
#define INTEGRATOR_CRABBITMQ_SHIM_H

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/time.h>

/* Publishing and consuming happen on this channel. */
#define INTEGRATOR_AMQP_CHANNEL 1
/* Queue declarations happen on this one: a declaration RabbitMQ refuses closes its channel, and must not take the
   publishes awaiting confirms or the unacknowledged deliveries of the work channel with it. */
#define INTEGRATOR_AMQP_DECLARE_CHANNEL 2

/* Results besides 0 (success) and rabbitmq-c's own negative statuses. */
#define INTEGRATOR_AMQP_CHANNEL_CLOSED (-2000)    /* the server closed the channel; close-ok was sent, it may reopen */
#define INTEGRATOR_AMQP_CONNECTION_CLOSED (-2001) /* the server closed the connection */
#define INTEGRATOR_AMQP_NO_REPLY (-2002)

/* What a frame other than a delivery meant (see integrator_amqp_next_event). */
#define INTEGRATOR_AMQP_EVENT_NONE 0
#define INTEGRATOR_AMQP_EVENT_ACK 1
#define INTEGRATOR_AMQP_EVENT_NACK 2
#define INTEGRATOR_AMQP_EVENT_RETURN 3
#define INTEGRATOR_AMQP_EVENT_BLOCKED 4
#define INTEGRATOR_AMQP_EVENT_UNBLOCKED 5
#define INTEGRATOR_AMQP_EVENT_CLOSED 6

typedef struct {
    int kind;
    uint64_t tag;
    int multiple;
    uint16_t reply_code;
    /* basic.return's reply text, connection.blocked's reason, or a close's reply text. */
    char text[256];
    /* basic.return: where the message was going and the message id it carried. */
    char routing_key[256];
    char message_id[128];
} integrator_amqp_event_t;

static inline void integrator_amqp_copy(char *target, size_t capacity, amqp_bytes_t bytes) {
    size_t length = bytes.len < capacity - 1 ? bytes.len : capacity - 1;
    if (length) memcpy(target, bytes.bytes, length);
    target[length] = 0;
}

/* 0 when the RPC succeeded; otherwise a negative code, the server's reply code in `reply_code` (when it sent one) and a
   message in `error`. */
static inline int integrator_amqp_check(amqp_rpc_reply_t reply, const char *what,
                                        uint16_t *reply_code, char *error, size_t error_len) {
    if (reply_code) *reply_code = 0;
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        if (error) snprintf(error, error_len, "%s: %s", what, amqp_error_string2(reply.library_error));
        return reply.library_error < 0 ? reply.library_error : -1;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *close = (amqp_connection_close_t *)reply.reply.decoded;
            if (reply_code) *reply_code = close->reply_code;
            if (error) snprintf(error, error_len, "%s: server closed the connection: %u %.*s", what, close->reply_code,
                                (int)close->reply_text.len, (char *)close->reply_text.bytes);
            return INTEGRATOR_AMQP_CONNECTION_CLOSED;
        }
        if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *close = (amqp_channel_close_t *)reply.reply.decoded;
            if (reply_code) *reply_code = close->reply_code;
            if (error) snprintf(error, error_len, "%s: %.*s", what, (int)close->reply_text.len, (char *)close->reply_text.bytes);
            return INTEGRATOR_AMQP_CHANNEL_CLOSED;
        }
        if (error) snprintf(error, error_len, "%s: server error", what);
        return INTEGRATOR_AMQP_CONNECTION_CLOSED;
    default:
        if (error) snprintf(error, error_len, "%s: no reply", what);
        return INTEGRATOR_AMQP_NO_REPLY;
    }
}

/* Acknowledges a channel.close the server sent outside an RPC, so the channel may be opened again. */
static inline void integrator_amqp_close_ok(amqp_connection_state_t conn, amqp_channel_t channel) {
    amqp_channel_close_ok_t close_ok;
    memset(&close_ok, 0, sizeof close_ok);
    amqp_send_method(conn, channel, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
}

static inline int integrator_amqp_open_channel(amqp_connection_state_t conn, amqp_channel_t channel, char *error, size_t error_len) {
    amqp_channel_open(conn, channel);
    return integrator_amqp_check(amqp_get_rpc_reply(conn), "channel.open", NULL, error, error_len);
}

/* Opens a TCP connection, logs in with PLAIN and opens the work channel. On failure the connection is destroyed.
   The client properties announce the connection.blocked capability, without which RabbitMQ blocks a publishing
   connection during a resource alarm without saying so. RPCs give up after rpc_timeout_ms. */
static inline int integrator_amqp_connect(amqp_connection_state_t *out, const char *host, int port, const char *vhost,
                                          const char *user, const char *password, int heartbeat_seconds, int timeout_ms,
                                          int rpc_timeout_ms, char *error, size_t error_len) {
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *socket = amqp_tcp_socket_new(conn);
    if (!socket) {
        snprintf(error, error_len, "cannot create a socket");
        amqp_destroy_connection(conn);
        return -1;
    }
    struct timeval timeout = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    int status = amqp_socket_open_noblock(socket, host, port, &timeout);
    if (status != AMQP_STATUS_OK) {
        snprintf(error, error_len, "cannot connect to %s:%d: %s", host, port, amqp_error_string2(status));
        amqp_destroy_connection(conn);
        return status;
    }
    struct timeval rpc_timeout = {rpc_timeout_ms / 1000, (rpc_timeout_ms % 1000) * 1000};
    amqp_set_rpc_timeout(conn, &rpc_timeout);
    amqp_table_entry_t capability_entries[1];
    capability_entries[0].key = amqp_cstring_bytes("connection.blocked");
    capability_entries[0].value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capability_entries[0].value.value.boolean = 1;
    amqp_table_entry_t property_entries[1];
    property_entries[0].key = amqp_cstring_bytes("capabilities");
    property_entries[0].value.kind = AMQP_FIELD_KIND_TABLE;
    property_entries[0].value.value.table.num_entries = 1;
    property_entries[0].value.value.table.entries = capability_entries;
    amqp_table_t properties = {1, property_entries};
    status = integrator_amqp_check(
        amqp_login_with_properties(conn, vhost, 0, 131072, heartbeat_seconds, &properties, AMQP_SASL_METHOD_PLAIN, user, password),
        "login", NULL, error, error_len);
    if (status == 0) status = integrator_amqp_open_channel(conn, INTEGRATOR_AMQP_CHANNEL, error, error_len);
    if (status != 0) {
        amqp_destroy_connection(conn);
        return status;
    }
    *out = conn;
    return 0;
}

static inline void integrator_amqp_close(amqp_connection_state_t conn) {
    amqp_channel_close(conn, INTEGRATOR_AMQP_CHANNEL, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
}

/* Puts the work channel in publisher-confirm mode. */
static inline int integrator_amqp_confirm_select(amqp_connection_state_t conn, char *error, size_t error_len) {
    amqp_confirm_select(conn, INTEGRATOR_AMQP_CHANNEL);
    return integrator_amqp_check(amqp_get_rpc_reply(conn), "confirm.select", NULL, error, error_len);
}

/* Declares a durable queue on `channel`. max_priority > 0 sets x-max-priority; dead_letter_to routes rejected and
   expired messages to that queue through the default exchange. passive only checks that the queue exists. Counts are
   written when non-null; a refusal leaves the server's reply code in `reply_code` (404 missing, 406 other arguments),
   and the channel closed and acknowledged: open it again before the next declaration. */
static inline int integrator_amqp_declare(amqp_connection_state_t conn, amqp_channel_t channel, const char *queue, int passive,
                                          int max_priority, const char *dead_letter_to, uint32_t *message_count,
                                          uint16_t *reply_code, char *error, size_t error_len) {
    amqp_table_entry_t entries[3];
    int count = 0;
    if (max_priority > 0) {
        entries[count].key = amqp_cstring_bytes("x-max-priority");
        entries[count].value.kind = AMQP_FIELD_KIND_I32;
        entries[count].value.value.i32 = max_priority;
        count++;
    }
    if (dead_letter_to) {
        entries[count].key = amqp_cstring_bytes("x-dead-letter-exchange");
        entries[count].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[count].value.value.bytes = amqp_cstring_bytes("");
        count++;
        entries[count].key = amqp_cstring_bytes("x-dead-letter-routing-key");
        entries[count].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[count].value.value.bytes = amqp_cstring_bytes(dead_letter_to);
        count++;
    }
    amqp_table_t arguments = {count, count ? entries : NULL};
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(conn, channel, amqp_cstring_bytes(queue), passive, 1, 0, 0,
                                                     passive ? amqp_empty_table : arguments);
    int status = integrator_amqp_check(amqp_get_rpc_reply(conn), "queue.declare", reply_code, error, error_len);
    if (status == 0 && ok && message_count) *message_count = ok->message_count;
    /* A refused declaration closes only its channel: acknowledge that, so the channel can be opened again. */
    if (status == INTEGRATOR_AMQP_CHANNEL_CLOSED) integrator_amqp_close_ok(conn, channel);
    return status;
}

/* Drops the ready messages of `queue` (those delivered and not yet acknowledged stay), writing how many to
   message_count. Like a passive declaration, a missing queue closes the channel with reply code 404. */
static inline int integrator_amqp_purge(amqp_connection_state_t conn, amqp_channel_t channel, const char *queue,
                                        uint32_t *message_count, uint16_t *reply_code, char *error, size_t error_len) {
    amqp_queue_purge_ok_t *ok = amqp_queue_purge(conn, channel, amqp_cstring_bytes(queue));
    int status = integrator_amqp_check(amqp_get_rpc_reply(conn), "queue.purge", reply_code, error, error_len);
    if (status == 0 && ok && message_count) *message_count = ok->message_count;
    if (status == INTEGRATOR_AMQP_CHANNEL_CLOSED) integrator_amqp_close_ok(conn, channel);
    return status;
}

/* Publishes a persistent JSON message to `routing_key` on the default exchange, mandatory: a message no queue takes
   comes back as basic.return (before its confirm) instead of vanishing. expiration (milliseconds as text) and
   message_id may be NULL. Returns 0 when written to the socket; the confirm arrives later. */
static inline int integrator_amqp_publish(amqp_connection_state_t conn, const char *routing_key, const void *body, size_t length,
                                          int priority, const char *expiration, const char *message_id) {
    amqp_basic_properties_t properties;
    memset(&properties, 0, sizeof(properties));
    properties._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG;
    properties.content_type = amqp_cstring_bytes("application/json");
    properties.delivery_mode = 2;
    properties.priority = (uint8_t)priority;
    if (expiration) {
        properties._flags |= AMQP_BASIC_EXPIRATION_FLAG;
        properties.expiration = amqp_cstring_bytes(expiration);
    }
    if (message_id) {
        properties._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
        properties.message_id = amqp_cstring_bytes(message_id);
    }
    amqp_bytes_t payload = {length, (void *)body};
    return amqp_basic_publish(conn, INTEGRATOR_AMQP_CHANNEL, amqp_empty_bytes, amqp_cstring_bytes(routing_key), 1, 0,
                              &properties, payload);
}

static inline int integrator_amqp_qos(amqp_connection_state_t conn, uint16_t prefetch, char *error, size_t error_len) {
    amqp_basic_qos(conn, INTEGRATOR_AMQP_CHANNEL, 0, prefetch, 0);
    return integrator_amqp_check(amqp_get_rpc_reply(conn), "basic.qos", NULL, error, error_len);
}

/* Consumes `queue` with the queue's name as consumer tag, so each delivery tells which queue it came from. */
static inline int integrator_amqp_consume(amqp_connection_state_t conn, const char *queue, char *error, size_t error_len) {
    amqp_basic_consume(conn, INTEGRATOR_AMQP_CHANNEL, amqp_cstring_bytes(queue), amqp_cstring_bytes(queue), 0, 0, 0,
                       amqp_empty_table);
    return integrator_amqp_check(amqp_get_rpc_reply(conn), "basic.consume", NULL, error, error_len);
}

/* With `multiple`, acknowledges every unacknowledged delivery up to and including `tag`. */
static inline int integrator_amqp_ack(amqp_connection_state_t conn, uint64_t tag, int multiple) {
    return amqp_basic_ack(conn, INTEGRATOR_AMQP_CHANNEL, tag, multiple ? 1 : 0);
}

static inline int integrator_amqp_nack(amqp_connection_state_t conn, uint64_t tag, int requeue) {
    return amqp_basic_nack(conn, INTEGRATOR_AMQP_CHANNEL, tag, 0, requeue);
}

/* The kernel's id of the calling thread (its entry under /proc/self/task). */
static inline int integrator_amqp_thread_id(void) { return (int)syscall(SYS_gettid); }

/* An eventfd another thread signals to interrupt integrator_amqp_wait; negative on failure. */
static inline int integrator_amqp_make_wake_fd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

static inline void integrator_amqp_signal(int wake_fd) {
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd, &one, sizeof one);
    (void)ignored;
}

static inline void integrator_amqp_reset_wake_fd(int wake_fd) {
    uint64_t count;
    ssize_t ignored = read(wake_fd, &count, sizeof count);
    (void)ignored;
}

/* Waits up to timeout_ms (-1: without limit) until the connection has something to read or `wake_fd` (an eventfd)
   is signalled, which it then resets. 1: the connection has data (or failed: the next read says so); 0: woken, or
   nothing came. Heartbeats are serviced by the reads that follow. */
static inline int integrator_amqp_wait(amqp_connection_state_t conn, int wake_fd, int timeout_ms) {
    if (amqp_frames_enqueued(conn) || amqp_data_in_buffer(conn)) return 1;
    struct pollfd fds[2] = {{amqp_get_sockfd(conn), POLLIN, 0}, {wake_fd, POLLIN, 0}};
    if (poll(fds, 2, timeout_ms) <= 0) return 0;
    if (fds[1].revents & POLLIN) integrator_amqp_reset_wake_fd(wake_fd);
    return (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}

/* Sleeps up to timeout_ms, or until `wake_fd` is signalled (then reset): 1 when woken. For pauses between
   reconnection attempts that a new command or a shutdown must be able to cut short. */
static inline int integrator_amqp_sleep(int wake_fd, int timeout_ms) {
    struct pollfd fds[1] = {{wake_fd, POLLIN, 0}};
    if (poll(fds, 1, timeout_ms) <= 0) return 0;
    integrator_amqp_reset_wake_fd(wake_fd);
    return 1;
}

/* Classifies a frame that is not a delivery into `event`. 1 when it was read; negative when the connection broke
   (the content of a returned message could not be read). */
static inline int integrator_amqp_classify(amqp_connection_state_t conn, amqp_frame_t *frame, integrator_amqp_event_t *event,
                                           char *error, size_t error_len) {
    memset(event, 0, sizeof *event);
    if (frame->frame_type != AMQP_FRAME_METHOD) return 1;
    switch (frame->payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *ack = (amqp_basic_ack_t *)frame->payload.method.decoded;
        event->kind = INTEGRATOR_AMQP_EVENT_ACK;
        event->tag = ack->delivery_tag;
        event->multiple = ack->multiple;
        return 1;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *nack = (amqp_basic_nack_t *)frame->payload.method.decoded;
        event->kind = INTEGRATOR_AMQP_EVENT_NACK;
        event->tag = nack->delivery_tag;
        event->multiple = nack->multiple;
        return 1;
    }
    case AMQP_BASIC_RETURN_METHOD: {
        amqp_basic_return_t *returned = (amqp_basic_return_t *)frame->payload.method.decoded;
        event->kind = INTEGRATOR_AMQP_EVENT_RETURN;
        event->reply_code = returned->reply_code;
        integrator_amqp_copy(event->text, sizeof event->text, returned->reply_text);
        integrator_amqp_copy(event->routing_key, sizeof event->routing_key, returned->routing_key);
        /* The returned message's header and body follow at once. */
        amqp_message_t message;
        amqp_rpc_reply_t reply = amqp_read_message(conn, frame->channel, &message, 0);
        if (reply.reply_type != AMQP_RESPONSE_NORMAL) {
            int status = integrator_amqp_check(reply, "reading a returned message", NULL, error, error_len);
            return status ? status : -1;
        }
        if (message.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) {
            integrator_amqp_copy(event->message_id, sizeof event->message_id, message.properties.message_id);
        }
        amqp_destroy_message(&message);
        return 1;
    }
    case AMQP_CONNECTION_BLOCKED_METHOD: {
        amqp_connection_blocked_t *blocked = (amqp_connection_blocked_t *)frame->payload.method.decoded;
        event->kind = INTEGRATOR_AMQP_EVENT_BLOCKED;
        integrator_amqp_copy(event->text, sizeof event->text, blocked->reason);
        return 1;
    }
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        event->kind = INTEGRATOR_AMQP_EVENT_UNBLOCKED;
        return 1;
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *close = (amqp_channel_close_t *)frame->payload.method.decoded;
        event->kind = INTEGRATOR_AMQP_EVENT_CLOSED;
        event->reply_code = close->reply_code;
        integrator_amqp_copy(event->text, sizeof event->text, close->reply_text);
        return 1;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_t *close = (amqp_connection_close_t *)frame->payload.method.decoded;
        event->kind = INTEGRATOR_AMQP_EVENT_CLOSED;
        event->reply_code = close->reply_code;
        integrator_amqp_copy(event->text, sizeof event->text, close->reply_text);
        return 1;
    }
    default:
        return 1;
    }
}

/* Reads one frame if one is waiting, for up to timeout_ms. 1: `event` says what it was (its kind may be NONE);
   0: nothing came; negative: the connection is broken (message in `error`). Waiting also services heartbeats. */
static inline int integrator_amqp_next_event(amqp_connection_state_t conn, int timeout_ms, integrator_amqp_event_t *event,
                                             char *error, size_t error_len) {
    struct timeval timeout = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    amqp_frame_t frame;
    amqp_maybe_release_buffers(conn);
    int status = amqp_simple_wait_frame_noblock(conn, &frame, &timeout);
    if (status == AMQP_STATUS_TIMEOUT) return 0;
    if (status != AMQP_STATUS_OK) {
        snprintf(error, error_len, "reading from RabbitMQ: %s", amqp_error_string2(status));
        return status;
    }
    return integrator_amqp_classify(conn, &frame, event, error, error_len);
}

/* Waits up to timeout_ms for a delivery. 1: a delivery is in `envelope` (free it with amqp_destroy_envelope);
   2: another frame came, described in `event`; 0: nothing arrived; negative: the connection is broken. */
static inline int integrator_amqp_next_delivery(amqp_connection_state_t conn, int timeout_ms, amqp_envelope_t *envelope,
                                                integrator_amqp_event_t *event, char *error, size_t error_len) {
    struct timeval timeout = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    amqp_maybe_release_buffers(conn);
    amqp_rpc_reply_t reply = amqp_consume_message(conn, envelope, &timeout, 0);
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) return 1;
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_TIMEOUT) return 0;
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        int status = integrator_amqp_next_event(conn, timeout_ms, event, error, error_len);
        return status == 1 ? 2 : status;
    }
    return integrator_amqp_check(reply, "consume", NULL, error, error_len);
}

#endif
