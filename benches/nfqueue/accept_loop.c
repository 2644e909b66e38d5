/* The floor for telestrip's NFQUEUE loop: a trivial program that accepts every queued
 * packet and judges nothing, built with libnetfilter_queue (Debian: libnetfilter-queue-dev).
 * examples/nfqueue_bench.rs runs it beside telestrip on the same traffic.
 *
 *   accept_loop QUEUE single    one verdict system call per packet
 *   accept_loop QUEUE batch     after a blocking receive, whatever else is queued (up to 64
 *                               packets) is received without waiting, then one
 *                               NFQNL_MSG_VERDICT_BATCH accepts them all
 *
 * Like telestrip it asks for whole packets (copy range 65535) and sizes its socket buffer
 * for the queue. It runs until killed; on SIGTERM it prints "packets batches". */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 64

static volatile sig_atomic_t stopping;
static uint32_t last_id;
static int batched;
static unsigned long long packets, batches;

static void stop(int signal) {
    (void)signal;
    stopping = 1;
}

static int on_packet(struct nfq_q_handle *queue, struct nfgenmsg *message, struct nfq_data *data,
                     void *context) {
    (void)message;
    (void)context;
    struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(data);
    if (header == NULL) return 0;
    last_id = ntohl(header->packet_id);
    packets++;
    if (!batched) {
        batches++;
        return nfq_set_verdict(queue, last_id, NF_ACCEPT, 0, NULL);
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[2], "single") != 0 && strcmp(argv[2], "batch") != 0)) {
        fprintf(stderr, "usage: %s QUEUE single|batch\n", argv[0]);
        return 2;
    }
    uint16_t number = (uint16_t)atoi(argv[1]);
    batched = strcmp(argv[2], "batch") == 0;
    struct sigaction action = {.sa_handler = stop};
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);

    struct nfq_handle *handle = nfq_open();
    if (handle == NULL) {
        perror("nfq_open");
        return 1;
    }
    struct nfq_q_handle *queue = nfq_create_queue(handle, number, on_packet, NULL);
    if (queue == NULL) {
        perror("nfq_create_queue");
        return 1;
    }
    if (nfq_set_mode(queue, NFQNL_COPY_PACKET, 0xffff) < 0) {
        perror("nfq_set_mode");
        return 1;
    }
    nfq_set_queue_maxlen(queue, 4096);
    int fd = nfq_fd(handle);
    int buffer = 4096 * 2048;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer) < 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
    /* The kernel's ENOBUFS (a full socket buffer) is a loss, not an error to stop on. */
    int on = 1;
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &on, sizeof on);

    static char frame[65536 + 4096];
    while (!stopping) {
        ssize_t length = recv(fd, frame, sizeof frame, 0);
        if (length < 0) {
            if (errno == EINTR) continue;
            perror("recv");
            break;
        }
        nfq_handle_packet(handle, frame, (int)length);
        if (!batched) continue;
        for (int taken = 1; taken < BATCH; taken++) {
            length = recv(fd, frame, sizeof frame, MSG_DONTWAIT);
            if (length < 0) break;
            nfq_handle_packet(handle, frame, (int)length);
        }
        batches++;
        nfq_set_verdict_batch(queue, last_id, NF_ACCEPT);
    }
    printf("%llu %llu\n", packets, batches);
    nfq_destroy_queue(queue);
    nfq_close(handle);
    return 0;
}
