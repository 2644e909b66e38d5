/* Load generator of examples/nfqueue_bench.rs: sends the IPv4 packets of a file (each
 * prefixed by its 2-byte big-endian length) from a raw socket, 64 per sendmmsg, over and
 * over until SECONDS have passed, then prints how many it sent.
 *
 *   blast FILE SECONDS keep|rotate
 *
 * rotate: each pass over the file uses the next source address of the /24 (.10 to .250),
 * with both checksums updated, so a file of handshakes is a new set of flows every pass. */
#define _GNU_SOURCE /* sendmmsg */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64

/* RFC 1624: the checksum after a 16-bit word changes from `old` to `new`. */
static uint16_t adjust(uint16_t checksum, uint16_t old, uint16_t new) {
    uint32_t sum = (uint16_t)~ntohs(checksum) + (uint16_t)~old + new;
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return htons((uint16_t)~sum);
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s FILE SECONDS keep|rotate\n", argv[0]);
        return 2;
    }
    int rotate = strcmp(argv[3], "rotate") == 0;
    double seconds = atof(argv[2]);
    FILE *file = fopen(argv[1], "rb");
    if (file == NULL) {
        perror(argv[1]);
        return 1;
    }
    fseek(file, 0, SEEK_END);
    long size = ftell(file);
    rewind(file);
    uint8_t *data = malloc((size_t)size);
    if (data == NULL || fread(data, 1, (size_t)size, file) != (size_t)size) {
        fprintf(stderr, "%s: cannot read\n", argv[1]);
        return 1;
    }
    fclose(file);
    size_t count = 0;
    for (long at = 0; at + 2 <= size; count++) at += 2 + ((data[at] << 8) | data[at + 1]);
    uint8_t **packets = calloc(count, sizeof *packets);
    size_t *lengths = calloc(count, sizeof *lengths);
    struct sockaddr_in *targets = calloc(count, sizeof *targets);
    long at = 0;
    for (size_t i = 0; i < count; i++) {
        lengths[i] = (size_t)((data[at] << 8) | data[at + 1]);
        packets[i] = data + at + 2;
        at += 2 + (long)lengths[i];
        if (lengths[i] < 28 || at > size) {
            fprintf(stderr, "%s: packet %zu is cut or too short\n", argv[1], i);
            return 1;
        }
        targets[i].sin_family = AF_INET;
        memcpy(&targets[i].sin_addr, packets[i] + 16, 4);
    }

    int sock = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
    if (sock < 0) {
        perror("socket");
        return 1;
    }
    int buffer = 4 << 20;
    setsockopt(sock, SOL_SOCKET, SO_SNDBUFFORCE, &buffer, sizeof buffer);
    struct mmsghdr messages[BATCH];
    struct iovec vectors[BATCH];
    unsigned long long sent = 0;
    double until = now() + seconds;
    uint8_t host = 10;
    size_t next = 0;
    while (now() < until) {
        int n = 0;
        for (; n < BATCH; n++) {
            if (next == count) {
                /* The packets of this batch are sent before the file is rewritten. */
                if (n > 0) break;
                next = 0;
                if (rotate) {
                    host = host >= 250 ? 10 : host + 1;
                    for (size_t i = 0; i < count; i++) {
                        uint8_t *ip = packets[i];
                        size_t header = (size_t)(ip[0] & 0x0f) * 4;
                        uint16_t old = (uint16_t)((ip[14] << 8) | ip[15]);
                        uint16_t new = (uint16_t)((ip[14] << 8) | host);
                        ip[15] = host;
                        uint16_t checksum;
                        memcpy(&checksum, ip + 10, 2);
                        checksum = adjust(checksum, old, new);
                        memcpy(ip + 10, &checksum, 2);
                        /* TCP's checksum is at offset 16 of its header, UDP's at 6. */
                        size_t field = header + (ip[9] == IPPROTO_TCP ? 16 : 6);
                        memcpy(&checksum, ip + field, 2);
                        if (ip[9] == IPPROTO_UDP && checksum == 0) continue;
                        checksum = adjust(checksum, old, new);
                        memcpy(ip + field, &checksum, 2);
                    }
                }
            }
            vectors[n].iov_base = packets[next];
            vectors[n].iov_len = lengths[next];
            memset(&messages[n], 0, sizeof messages[n]);
            messages[n].msg_hdr.msg_iov = &vectors[n];
            messages[n].msg_hdr.msg_iovlen = 1;
            messages[n].msg_hdr.msg_name = &targets[next];
            messages[n].msg_hdr.msg_namelen = sizeof targets[next];
            next++;
        }
        int done = sendmmsg(sock, messages, (unsigned)n, 0);
        if (done > 0) sent += (unsigned long long)done;
    }
    printf("%llu\n", sent);
    return 0;
}
