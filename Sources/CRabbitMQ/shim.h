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
#include <sys/time.h>

#define INTEGRATOR_AMQP_CHANNEL 1

/* 0 when the RPC succeeded; otherwise a negative code and a message in `error`. */
static inline int integrator_amqp_check(amqp_rpc_reply_t reply, const char *what, char *error, size_t error_len) {
    switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return 0;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        if (error) snprintf(error, error_len, "%s: %s", what, amqp_error_string2(reply.library_error));
        return reply.library_error < 0 ? reply.library_error : -1;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
            amqp_connection_close_t *close = (amqp_connection_close_t *)reply.reply.decoded;
            if (error) snprintf(error, error_len, "%s: server closed the connection: %u %.*s", what, close->reply_code,
                                (int)close->reply_text.len, (char *)close->reply_text.bytes);
        } else if (reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            amqp_channel_close_t *close = (amqp_channel_close_t *)reply.reply.decoded;
            if (error) snprintf(error, error_len, "%s: server closed the channel: %u %.*s", what, close->reply_code,
                                (int)close->reply_text.len, (char *)close->reply_text.bytes);
        } else if (error) {
            snprintf(error, error_len, "%s: server error", what);
        }
        return -2000;
    default:
        if (error) snprintf(error, error_len, "%s: no reply", what);
        return -2001;
    }
}

/* Opens a TCP connection, logs in with PLAIN and opens channel 1. On failure the connection is destroyed. */
static inline int integrator_amqp_connect(amqp_connection_state_t *out, const char *host, int port, const char *vhost,
                                          const char *user, const char *password, int heartbeat_seconds, int timeout_ms,
                                          char *error, size_t error_len) {
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
    status = integrator_amqp_check(amqp_login(conn, vhost, 0, 131072, heartbeat_seconds, AMQP_SASL_METHOD_PLAIN, user, password),
                                   "login", error, error_len);
    if (status == 0) {
        amqp_channel_open(conn, INTEGRATOR_AMQP_CHANNEL);
        status = integrator_amqp_check(amqp_get_rpc_reply(conn), "channel.open", error, error_len);
    }
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

/* Puts the channel in publisher-confirm mode. */
static inline int integrator_amqp_confirm_select(amqp_connection_state_t conn, char *error, size_t error_len) {
    amqp_confirm_select(conn, INTEGRATOR_AMQP_CHANNEL);
    return integrator_amqp_check(amqp_get_rpc_reply(conn), "confirm.select", error, error_len);
}

/* Declares a durable queue. max_priority > 0 sets x-max-priority; dead_letter_to routes expired messages to that
   queue through the default exchange (used by delay queues). passive only checks. Counts are written when non-null. */
static inline int integrator_amqp_declare(amqp_connection_state_t conn, const char *queue, int passive, int max_priority,
                                          const char *dead_letter_to, uint32_t *message_count, uint32_t *consumer_count,
                                          char *error, size_t error_len) {
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
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(conn, INTEGRATOR_AMQP_CHANNEL, amqp_cstring_bytes(queue), passive,
                                                     1, 0, 0, passive ? amqp_empty_table : arguments);
    int status = integrator_amqp_check(amqp_get_rpc_reply(conn), "queue.declare", error, error_len);
    if (status == 0 && ok) {
        if (message_count) *message_count = ok->message_count;
        if (consumer_count) *consumer_count = ok->consumer_count;
    }
    return status;
}

/* Publishes a persistent JSON message to `routing_key` on the default exchange. expiration (milliseconds as text)
   may be NULL. Returns 0 when written to the socket; the confirm arrives later. */
static inline int integrator_amqp_publish(amqp_connection_state_t conn, const char *routing_key, const void *body, size_t length,
                                          int priority, const char *expiration) {
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
    amqp_bytes_t payload = {length, (void *)body};
    return amqp_basic_publish(conn, INTEGRATOR_AMQP_CHANNEL, amqp_empty_bytes, amqp_cstring_bytes(routing_key), 0, 0,
                              &properties, payload);
}

static inline int integrator_amqp_qos(amqp_connection_state_t conn, uint16_t prefetch, char *error, size_t error_len) {
    amqp_basic_qos(conn, INTEGRATOR_AMQP_CHANNEL, 0, prefetch, 0);
    return integrator_amqp_check(amqp_get_rpc_reply(conn), "basic.qos", error, error_len);
}

static inline int integrator_amqp_consume(amqp_connection_state_t conn, const char *queue, char *error, size_t error_len) {
    amqp_basic_consume(conn, INTEGRATOR_AMQP_CHANNEL, amqp_cstring_bytes(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    return integrator_amqp_check(amqp_get_rpc_reply(conn), "basic.consume", error, error_len);
}

/* With `multiple`, acknowledges every unacknowledged delivery up to and including `tag`. */
static inline int integrator_amqp_ack(amqp_connection_state_t conn, uint64_t tag, int multiple) {
    return amqp_basic_ack(conn, INTEGRATOR_AMQP_CHANNEL, tag, multiple ? 1 : 0);
}

/* An eventfd another thread signals to interrupt integrator_amqp_wait; negative on failure. */
static inline int integrator_amqp_make_wake_fd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

static inline void integrator_amqp_signal(int wake_fd) {
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd, &one, sizeof one);
    (void)ignored;
}

/* Waits up to timeout_ms until the connection has something to read or `wake_fd` (an eventfd) is signalled, which
   it then resets. 1: the connection has data (or failed: the next read says so); 0: woken, or nothing came.
   Heartbeats are serviced by the reads that follow. */
static inline int integrator_amqp_wait(amqp_connection_state_t conn, int wake_fd, int timeout_ms) {
    if (amqp_frames_enqueued(conn) || amqp_data_in_buffer(conn)) return 1;
    struct pollfd fds[2] = {{amqp_get_sockfd(conn), POLLIN, 0}, {wake_fd, POLLIN, 0}};
    if (poll(fds, 2, timeout_ms) <= 0) return 0;
    if (fds[1].revents & POLLIN) {
        uint64_t count;
        ssize_t ignored = read(wake_fd, &count, sizeof count);
        (void)ignored;
    }
    return (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
}

static inline int integrator_amqp_nack(amqp_connection_state_t conn, uint64_t tag, int requeue) {
    return amqp_basic_nack(conn, INTEGRATOR_AMQP_CHANNEL, tag, 0, requeue);
}

/* Waits up to timeout_ms for a delivery. 1: a delivery is in `envelope` (free it with amqp_destroy_envelope);
   0: nothing arrived; negative: the connection is broken (message in `error`). Non-delivery frames are consumed. */
static inline int integrator_amqp_next_delivery(amqp_connection_state_t conn, int timeout_ms, amqp_envelope_t *envelope,
                                                char *error, size_t error_len) {
    struct timeval timeout = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    amqp_maybe_release_buffers(conn);
    amqp_rpc_reply_t reply = amqp_consume_message(conn, envelope, &timeout, 0);
    if (reply.reply_type == AMQP_RESPONSE_NORMAL) return 1;
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_TIMEOUT) return 0;
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION && reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        amqp_frame_t frame;
        int status = amqp_simple_wait_frame_noblock(conn, &frame, &timeout);
        if (status == AMQP_STATUS_TIMEOUT) return 0;
        if (status != AMQP_STATUS_OK) {
            snprintf(error, error_len, "reading a frame: %s", amqp_error_string2(status));
            return status;
        }
        if (frame.frame_type == AMQP_FRAME_METHOD &&
            (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD || frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD)) {
            snprintf(error, error_len, "the server closed the channel or connection");
            return -2002;
        }
        return 0;
    }
    return integrator_amqp_check(reply, "consume", error, error_len);
}

/* Waits up to timeout_ms for a publisher confirm. 1: `tag`, `multiple` and `is_ack` are set; 0: nothing yet;
   negative: the connection is broken. Waiting also services heartbeats. */
static inline int integrator_amqp_next_confirm(amqp_connection_state_t conn, int timeout_ms, uint64_t *tag, int *multiple,
                                               int *is_ack, char *error, size_t error_len) {
    struct timeval timeout = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    amqp_frame_t frame;
    amqp_maybe_release_buffers(conn);
    int status = amqp_simple_wait_frame_noblock(conn, &frame, &timeout);
    if (status == AMQP_STATUS_TIMEOUT) return 0;
    if (status != AMQP_STATUS_OK) {
        snprintf(error, error_len, "waiting for confirms: %s", amqp_error_string2(status));
        return status;
    }
    if (frame.frame_type != AMQP_FRAME_METHOD) return 0;
    if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
        amqp_basic_ack_t *ack = (amqp_basic_ack_t *)frame.payload.method.decoded;
        *tag = ack->delivery_tag;
        *multiple = ack->multiple;
        *is_ack = 1;
        return 1;
    }
    if (frame.payload.method.id == AMQP_BASIC_NACK_METHOD) {
        amqp_basic_nack_t *nack = (amqp_basic_nack_t *)frame.payload.method.decoded;
        *tag = nack->delivery_tag;
        *multiple = nack->multiple;
        *is_ack = 0;
        return 1;
    }
    if (frame.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD || frame.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
        snprintf(error, error_len, "the server closed the channel or connection");
        return -2002;
    }
    return 0;
}

#endif
