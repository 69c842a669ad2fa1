/*
 * vcam: a user-space V4L2 capture device for the UVC driver's tests.
 *
 * CI machines have no camera, no /dev/video* and no kernel modules (so neither vivid nor
 * v4l2loopback can be loaded). This library is preloaded (LD_PRELOAD) into a test process and
 * answers the V4L2 calls a UVC camera answers, so the real v4l crate and nokhwa code runs
 * against it: open, VIDIOC_* ioctls (through ioctl() or syscall(SYS_ioctl)), mmap, poll,
 * munmap and close.
 *
 * A camera is a description file $APG_VCAM_DIR/videoN. Opening that path, or /dev/videoN,
 * opens the emulated camera while the file exists. Deleting the file unplugs the camera: the
 * open handle then fails as uvcvideo does after a disconnect (ENODEV from ioctls, POLLERR|POLLHUP
 * from poll). Writing a new file with the same bus line replugs it, possibly under another
 * node number. Description lines:
 *
 *   card <name>                       VIDIOC_QUERYCAP card
 *   bus <bus_info>                    VIDIOC_QUERYCAP bus_info, e.g. usb-0000:00:14.0-3
 *   metadata                          the node is a UVC metadata node (META_CAPTURE)
 *   format <FOURCC> <w> <h> <fps> <payload file>
 *                                     one mode; every frame in it carries the payload file
 *                                     (a JPEG for MJPG, raw pixels for YUYV, GREY, Y16)
 *   stall_after <n>                   after n frames no more come, though the camera stays
 *                                     plugged in (a hung camera firmware)
 *
 * Behaviour follows the V4L2 memory-mapped streaming I/O rules: REQBUFS allocates up to four
 * buffers, QUERYBUF gives each an mmap offset, QBUF/DQBUF move them between the driver's and
 * the application's queues, frames are paced at the mode's frame rate, and DQBUF on a
 * non-blocking handle with no frame due returns EAGAIN.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_HANDLES 32
#define MAX_MODES 16
#define MAX_BUFFERS 4

struct mode {
    uint32_t fourcc, width, height, fps;
    char payload[512];
};

struct camera {
    int fd;
    char desc[512];
    char card[32], bus[32];
    int metadata;
    long stall_after; /* frames before the camera hangs; -1: never */
    struct mode modes[MAX_MODES];
    int nmodes;
    int current;   /* index into modes */
    uint32_t fps;  /* may differ from modes[current].fps after S_PARM */
    int nonblocking;
    uint32_t nbuffers;
    size_t buffer_length;
    void *mapped[MAX_BUFFERS];
    int queue[MAX_BUFFERS]; /* FIFO of queued buffer indexes */
    int queued;
    int streaming;
    uint32_t sequence;
    struct timespec due;
    unsigned char *payload;
    size_t payload_length;
};

static struct camera *cameras[MAX_HANDLES];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static int (*real_open)(const char *, int, ...);
static int (*real_close)(int);
static long (*real_syscall)(long, ...);
static int (*real_ioctl)(int, unsigned long, ...);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static int (*real_poll)(struct pollfd *, nfds_t, int);

static void resolve(void) {
    if (real_open) return;
    real_close = dlsym(RTLD_NEXT, "close");
    real_syscall = dlsym(RTLD_NEXT, "syscall");
    real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    real_mmap = dlsym(RTLD_NEXT, "mmap");
    real_munmap = dlsym(RTLD_NEXT, "munmap");
    real_poll = dlsym(RTLD_NEXT, "poll");
    real_open = dlsym(RTLD_NEXT, "open");
}

/* The description file behind a path, when the path names an emulated node. */
static int description_for(const char *path, char *out, size_t size) {
    const char *dir = getenv("APG_VCAM_DIR");
    if (!dir || !path) return 0;
    const char *name = strrchr(path, '/');
    name = name ? name + 1 : path;
    if (strncmp(name, "video", 5) != 0) return 0;
    size_t dir_length = strlen(dir);
    int in_dev = strncmp(path, "/dev/", 5) == 0 && strchr(path + 5, '/') == NULL;
    int in_dir = strncmp(path, dir, dir_length) == 0 && path[dir_length] == '/';
    if (!in_dev && !in_dir) return 0;
    snprintf(out, size, "%s/%s", dir, name);
    struct stat st;
    return stat(out, &st) == 0 && S_ISREG(st.st_mode);
}

static int unplugged(const struct camera *cam) {
    struct stat st;
    if (stat(cam->desc, &st) != 0) return 1;
    /* Replugged elsewhere: the old handle stays dead even if the node name returns. */
    FILE *f = fopen(cam->desc, "r");
    if (!f) return 1;
    char line[600];
    int same = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "bus ", 4) == 0) {
            line[strcspn(line, "\n")] = 0;
            same = strncmp(line + 4, cam->bus, sizeof cam->bus - 1) == 0;
        }
    }
    fclose(f);
    return !same;
}

static uint32_t fourcc_of(const char *s) {
    char c[4] = {' ', ' ', ' ', ' '};
    for (int i = 0; i < 4 && s[i]; i++) c[i] = s[i];
    return v4l2_fourcc(c[0], c[1], c[2], c[3]);
}

static int parse_description(struct camera *cam) {
    FILE *f = fopen(cam->desc, "r");
    if (!f) return -1;
    char line[600];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        if (strncmp(line, "card ", 5) == 0) {
            snprintf(cam->card, sizeof cam->card, "%.31s", line + 5);
        } else if (strncmp(line, "bus ", 4) == 0) {
            snprintf(cam->bus, sizeof cam->bus, "%.31s", line + 4);
        } else if (strcmp(line, "metadata") == 0) {
            cam->metadata = 1;
        } else if (strncmp(line, "stall_after ", 12) == 0) {
            cam->stall_after = atol(line + 12);
        } else if (strncmp(line, "format ", 7) == 0 && cam->nmodes < MAX_MODES) {
            struct mode *m = &cam->modes[cam->nmodes];
            char code[8];
            if (sscanf(line + 7, "%7s %u %u %u %511s", code, &m->width, &m->height, &m->fps,
                       m->payload) == 5) {
                m->fourcc = fourcc_of(code);
                cam->nmodes++;
            }
        }
    }
    fclose(f);
    cam->fps = cam->nmodes ? cam->modes[0].fps : 30;
    return 0;
}

static struct camera *find(int fd) {
    if (fd < 0) return NULL;
    for (int i = 0; i < MAX_HANDLES; i++)
        if (cameras[i] && cameras[i]->fd == fd) return cameras[i];
    return NULL;
}

static int open_camera(const char *desc, int flags) {
    struct camera *cam = calloc(1, sizeof *cam);
    if (!cam) { errno = ENOMEM; return -1; }
    snprintf(cam->desc, sizeof cam->desc, "%s", desc);
    cam->stall_after = -1;
    if (parse_description(cam) != 0) { free(cam); errno = ENOENT; return -1; }
    /* A real descriptor number, so nothing else in the process is handed the same one. */
    cam->fd = real_open("/dev/null", O_RDWR | (flags & O_CLOEXEC));
    if (cam->fd < 0) { free(cam); return -1; }
    cam->nonblocking = (flags & O_NONBLOCK) != 0;
    pthread_mutex_lock(&lock);
    int slot = -1;
    for (int i = 0; i < MAX_HANDLES; i++)
        if (!cameras[i]) { slot = i; break; }
    if (slot < 0) {
        pthread_mutex_unlock(&lock);
        real_close(cam->fd);
        free(cam);
        errno = EMFILE;
        return -1;
    }
    cameras[slot] = cam;
    pthread_mutex_unlock(&lock);
    return cam->fd;
}

int open(const char *path, int flags, ...) {
    resolve();
    char desc[512];
    if (description_for(path, desc, sizeof desc)) return open_camera(desc, flags);
    /* The mode argument exists only with O_CREAT or O_TMPFILE. */
    mode_t mode = 0;
    if (flags & (O_CREAT | O_TMPFILE)) {
        va_list ap;
        va_start(ap, flags);
        mode = va_arg(ap, mode_t);
        va_end(ap);
    }
    return real_open(path, flags, mode);
}

/* glibc's large-file names: the same calls on 64-bit systems. */
int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int close(int fd) {
    resolve();
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_HANDLES; i++) {
        if (cameras[i] && cameras[i]->fd == fd) {
            free(cameras[i]->payload);
            free(cameras[i]);
            cameras[i] = NULL;
        }
    }
    pthread_mutex_unlock(&lock);
    return real_close(fd);
}

/* ---- formats ---- */

/* What makes two modes distinct in each enumeration ioctl: ENUM_FMT lists formats,
 * ENUM_FRAMESIZES the sizes of one format, ENUM_FRAMEINTERVALS the rates of one size. */
enum level { BY_FORMAT, BY_SIZE, BY_RATE };

static int same_up_to(const struct mode *a, const struct mode *b, enum level level) {
    if (a->fourcc != b->fourcc) return 0;
    if (level == BY_FORMAT) return 1;
    if (a->width != b->width || a->height != b->height) return 0;
    return level == BY_SIZE || a->fps == b->fps;
}

/* The index-th mode that is distinct at `level` among those equal to `within` one level up
 * (every mode for BY_FORMAT); NULL past the end. */
static const struct mode *nth_distinct(const struct camera *cam, enum level level,
                                       const struct mode *within, uint32_t index) {
    uint32_t seen = 0;
    for (int i = 0; i < cam->nmodes; i++) {
        const struct mode *m = &cam->modes[i];
        if (level != BY_FORMAT && !same_up_to(m, within, level - 1)) continue;
        int repeated = 0;
        for (int j = 0; j < i; j++) repeated |= same_up_to(&cam->modes[j], m, level);
        if (!repeated && seen++ == index) return m;
    }
    return NULL;
}

static size_t image_size(const struct mode *m) {
    switch (m->fourcc) {
    case V4L2_PIX_FMT_GREY: return (size_t)m->width * m->height;
    case V4L2_PIX_FMT_Y16:
    case V4L2_PIX_FMT_YUYV: return (size_t)m->width * m->height * 2;
    default: return (size_t)m->width * m->height * 2; /* MJPEG: uvcvideo's worst case */
    }
}

static uint32_t bytes_per_line(const struct mode *m) {
    switch (m->fourcc) {
    case V4L2_PIX_FMT_GREY: return m->width;
    case V4L2_PIX_FMT_MJPEG: return 0;
    default: return m->width * 2;
    }
}

static void fill_pix(const struct camera *cam, struct v4l2_format *f) {
    const struct mode *m = &cam->modes[cam->current];
    memset(&f->fmt.pix, 0, sizeof f->fmt.pix);
    f->fmt.pix.width = m->width;
    f->fmt.pix.height = m->height;
    f->fmt.pix.pixelformat = m->fourcc;
    f->fmt.pix.field = V4L2_FIELD_NONE;
    f->fmt.pix.bytesperline = bytes_per_line(m);
    f->fmt.pix.sizeimage = image_size(m);
    f->fmt.pix.colorspace = V4L2_COLORSPACE_SRGB;
}

/* The mode nearest the request: same format first, then nearest size. */
static int nearest_mode(const struct camera *cam, uint32_t fourcc, uint32_t w, uint32_t h) {
    int best = -1;
    long best_cost = 0;
    for (int i = 0; i < cam->nmodes; i++) {
        const struct mode *m = &cam->modes[i];
        long cost = labs((long)m->width - w) + labs((long)m->height - h);
        if (m->fourcc != fourcc) cost += 1000000;
        if (best < 0 || cost < best_cost) { best = i; best_cost = cost; }
    }
    return best;
}

static int load_payload(struct camera *cam) {
    const struct mode *m = &cam->modes[cam->current];
    free(cam->payload);
    cam->payload = NULL;
    FILE *f = fopen(m->payload, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    long length = ftell(f);
    fseek(f, 0, SEEK_SET);
    cam->payload = malloc(length > 0 ? (size_t)length : 1);
    cam->payload_length = cam->payload ? fread(cam->payload, 1, (size_t)length, f) : 0;
    fclose(f);
    return cam->payload ? 0 : -1;
}

/* ---- streaming ---- */

static long long nanos(const struct timespec *t) {
    return (long long)t->tv_sec * 1000000000LL + t->tv_nsec;
}

static long long now_nanos(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return nanos(&t);
}

static int stalled(const struct camera *cam) {
    return cam->stall_after >= 0 && cam->sequence >= (uint32_t)cam->stall_after;
}

static long long wait_left(const struct camera *cam) {
    long long left = nanos(&cam->due) - now_nanos();
    return left > 0 ? left : 0;
}

static void sleep_nanos(long long n) {
    struct timespec t = {n / 1000000000LL, n % 1000000000LL};
    nanosleep(&t, NULL);
}

static int dequeue(struct camera *cam, struct v4l2_buffer *b) {
    if (!cam->streaming) return EINVAL;
    if (cam->queued == 0 || stalled(cam)) return EAGAIN;
    long long left = wait_left(cam);
    if (left > 0) {
        if (cam->nonblocking) return EAGAIN;
        sleep_nanos(left);
    }
    int index = cam->queue[0];
    memmove(cam->queue, cam->queue + 1, sizeof(int) * (size_t)(cam->queued - 1));
    cam->queued--;
    size_t used = cam->payload_length < cam->buffer_length ? cam->payload_length
                                                           : cam->buffer_length;
    if (cam->mapped[index]) memcpy(cam->mapped[index], cam->payload, used);
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    long long period = 1000000000LL / (cam->fps ? cam->fps : 30);
    long long due = nanos(&cam->due) + period;
    if (due < nanos(&t)) due = nanos(&t) + period;
    cam->due.tv_sec = due / 1000000000LL;
    cam->due.tv_nsec = due % 1000000000LL;
    memset(b, 0, sizeof *b);
    b->index = (uint32_t)index;
    b->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    b->memory = V4L2_MEMORY_MMAP;
    b->bytesused = (uint32_t)used;
    b->length = (uint32_t)cam->buffer_length;
    b->m.offset = (uint32_t)(index * cam->buffer_length);
    b->field = V4L2_FIELD_NONE;
    b->flags = V4L2_BUF_FLAG_MAPPED | V4L2_BUF_FLAG_DONE | V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC;
    b->sequence = cam->sequence++;
    b->timestamp.tv_sec = t.tv_sec;
    b->timestamp.tv_usec = t.tv_nsec / 1000;
    return 0;
}

/* Answers one ioctl; returns 0 or an errno value. */
static int camera_ioctl(struct camera *cam, unsigned long request, void *arg) {
    if (unplugged(cam)) return ENODEV;
    switch (request) {
    case VIDIOC_QUERYCAP: {
        struct v4l2_capability *c = arg;
        memset(c, 0, sizeof *c);
        snprintf((char *)c->driver, sizeof c->driver, "uvcvideo");
        snprintf((char *)c->card, sizeof c->card, "%s", cam->card);
        snprintf((char *)c->bus_info, sizeof c->bus_info, "%s", cam->bus);
        c->version = (6 << 16) | (1 << 8);
        c->capabilities = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_META_CAPTURE | V4L2_CAP_STREAMING |
                          V4L2_CAP_EXT_PIX_FORMAT | V4L2_CAP_DEVICE_CAPS;
        c->device_caps = cam->metadata
                             ? V4L2_CAP_META_CAPTURE | V4L2_CAP_STREAMING
                             : V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING |
                                   V4L2_CAP_EXT_PIX_FORMAT;
        return 0;
    }
    case VIDIOC_ENUM_FMT: {
        struct v4l2_fmtdesc *d = arg;
        if (cam->metadata || d->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return EINVAL;
        const struct mode *m = nth_distinct(cam, BY_FORMAT, NULL, d->index);
        if (!m) return EINVAL;
        d->pixelformat = m->fourcc;
        d->flags = m->fourcc == V4L2_PIX_FMT_MJPEG ? V4L2_FMT_FLAG_COMPRESSED : 0;
        snprintf((char *)d->description, sizeof d->description, "%.4s",
                 (const char *)&m->fourcc);
        return 0;
    }
    case VIDIOC_ENUM_FRAMESIZES: {
        struct v4l2_frmsizeenum *s = arg;
        struct mode within = {.fourcc = s->pixel_format};
        const struct mode *m = nth_distinct(cam, BY_SIZE, &within, s->index);
        if (!m) return EINVAL;
        s->type = V4L2_FRMSIZE_TYPE_DISCRETE;
        s->discrete.width = m->width;
        s->discrete.height = m->height;
        return 0;
    }
    case VIDIOC_ENUM_FRAMEINTERVALS: {
        struct v4l2_frmivalenum *v = arg;
        struct mode within = {.fourcc = v->pixel_format, .width = v->width, .height = v->height};
        const struct mode *m = nth_distinct(cam, BY_RATE, &within, v->index);
        if (!m) return EINVAL;
        v->type = V4L2_FRMIVAL_TYPE_DISCRETE;
        v->discrete.numerator = 1;
        v->discrete.denominator = m->fps;
        return 0;
    }
    case VIDIOC_G_FMT: {
        struct v4l2_format *f = arg;
        if (cam->metadata || f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || !cam->nmodes) return EINVAL;
        fill_pix(cam, f);
        return 0;
    }
    case VIDIOC_TRY_FMT:
    case VIDIOC_S_FMT: {
        struct v4l2_format *f = arg;
        if (cam->metadata || f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || !cam->nmodes) return EINVAL;
        if (request == VIDIOC_S_FMT && (cam->streaming || cam->nbuffers)) return EBUSY;
        int chosen = nearest_mode(cam, f->fmt.pix.pixelformat, f->fmt.pix.width,
                                  f->fmt.pix.height);
        int previous = cam->current;
        cam->current = chosen;
        fill_pix(cam, f);
        if (request == VIDIOC_TRY_FMT) cam->current = previous;
        else cam->fps = cam->modes[chosen].fps;
        return 0;
    }
    case VIDIOC_G_PARM:
    case VIDIOC_S_PARM: {
        struct v4l2_streamparm *p = arg;
        if (cam->metadata || p->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return EINVAL;
        if (request == VIDIOC_S_PARM) {
            struct v4l2_fract t = p->parm.capture.timeperframe;
            uint32_t wanted = t.numerator ? t.denominator / t.numerator : 0;
            const struct mode *cur = &cam->modes[cam->current];
            uint32_t best = cur->fps;
            for (int i = 0; i < cam->nmodes; i++) {
                const struct mode *m = &cam->modes[i];
                if (m->fourcc == cur->fourcc && m->width == cur->width &&
                    m->height == cur->height &&
                    labs((long)m->fps - wanted) < labs((long)best - wanted))
                    best = m->fps;
            }
            cam->fps = best;
        }
        memset(&p->parm, 0, sizeof p->parm);
        p->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
        p->parm.capture.timeperframe.numerator = 1;
        p->parm.capture.timeperframe.denominator = cam->fps;
        return 0;
    }
    case VIDIOC_REQBUFS: {
        struct v4l2_requestbuffers *r = arg;
        if (r->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || r->memory != V4L2_MEMORY_MMAP) return EINVAL;
        if (cam->streaming) return EBUSY;
        if (r->count == 0) {
            cam->nbuffers = 0;
            cam->queued = 0;
            return 0;
        }
        if (load_payload(cam) != 0) return EIO;
        cam->nbuffers = r->count > MAX_BUFFERS ? MAX_BUFFERS : r->count;
        /* Page-aligned, so each buffer's mmap offset is a valid file offset. */
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        cam->buffer_length = (image_size(&cam->modes[cam->current]) + page - 1) / page * page;
        cam->queued = 0;
        r->count = cam->nbuffers;
        return 0;
    }
    case VIDIOC_QUERYBUF: {
        struct v4l2_buffer *b = arg;
        if (b->index >= cam->nbuffers) return EINVAL;
        uint32_t index = b->index;
        memset(b, 0, sizeof *b);
        b->index = index;
        b->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
        b->memory = V4L2_MEMORY_MMAP;
        b->length = (uint32_t)cam->buffer_length;
        b->m.offset = (uint32_t)(index * cam->buffer_length);
        b->flags = cam->mapped[index] ? V4L2_BUF_FLAG_MAPPED : 0;
        return 0;
    }
    case VIDIOC_QBUF: {
        struct v4l2_buffer *b = arg;
        if (b->index >= cam->nbuffers || b->memory != V4L2_MEMORY_MMAP) return EINVAL;
        for (int i = 0; i < cam->queued; i++)
            if (cam->queue[i] == (int)b->index) return EINVAL;
        cam->queue[cam->queued++] = (int)b->index;
        b->flags |= V4L2_BUF_FLAG_QUEUED;
        return 0;
    }
    case VIDIOC_DQBUF:
        return dequeue(cam, arg);
    case VIDIOC_STREAMON:
        if (!cam->nbuffers) return EINVAL;
        cam->streaming = 1;
        clock_gettime(CLOCK_MONOTONIC, &cam->due);
        return 0;
    case VIDIOC_STREAMOFF:
        cam->streaming = 0;
        cam->queued = 0;
        return 0;
    default:
        return ENOTTY;
    }
}

/* Runs an ioctl on an emulated handle; -2 when fd is not one. */
static int try_ioctl(int fd, unsigned long request, void *arg) {
    pthread_mutex_lock(&lock);
    struct camera *cam = find(fd);
    if (!cam) {
        pthread_mutex_unlock(&lock);
        return -2;
    }
    int err;
    if (request == VIDIOC_DQBUF && !cam->nonblocking && cam->streaming && cam->queued) {
        /* Wait for the frame without holding the lock, as a driver sleeps on its queue. */
        long long left = wait_left(cam);
        pthread_mutex_unlock(&lock);
        sleep_nanos(left);
        pthread_mutex_lock(&lock);
        cam = find(fd);
        err = cam ? camera_ioctl(cam, request, arg) : EBADF;
    } else {
        err = camera_ioctl(cam, request, arg);
    }
    pthread_mutex_unlock(&lock);
    if (err) {
        errno = err;
        return -1;
    }
    return 0;
}

int ioctl(int fd, unsigned long request, ...) {
    resolve();
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    int r = try_ioctl(fd, request, arg);
    return r == -2 ? real_ioctl(fd, request, arg) : r;
}

/* The v4l crate issues ioctls through syscall(SYS_ioctl, ...). */
long syscall(long number, ...) {
    resolve();
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_ioctl) {
        int r = try_ioctl((int)a[0], (unsigned long)a[1], (void *)a[2]);
        if (r != -2) return r;
    }
    return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    resolve();
    pthread_mutex_lock(&lock);
    struct camera *cam = find(fd);
    if (!cam) {
        pthread_mutex_unlock(&lock);
        return real_mmap(addr, length, prot, flags, fd, offset);
    }
    void *result = MAP_FAILED;
    int err = EINVAL;
    if (cam->buffer_length && offset % (off_t)cam->buffer_length == 0) {
        size_t index = (size_t)offset / cam->buffer_length;
        if (index < cam->nbuffers && length <= cam->buffer_length) {
            result = real_mmap(NULL, cam->buffer_length, PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
            if (result == MAP_FAILED) err = errno;
            else cam->mapped[index] = result;
        }
    }
    pthread_mutex_unlock(&lock);
    if (result == MAP_FAILED) errno = err;
    return result;
}

void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
    __attribute__((alias("mmap")));

int munmap(void *addr, size_t length) {
    resolve();
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_HANDLES; i++)
        for (int j = 0; cameras[i] && j < MAX_BUFFERS; j++)
            if (cameras[i]->mapped[j] == addr) cameras[i]->mapped[j] = NULL;
    pthread_mutex_unlock(&lock);
    return real_munmap(addr, length);
}

int poll(struct pollfd *fds, nfds_t count, int timeout) {
    resolve();
    if (count != 1) return real_poll(fds, count, timeout);
    pthread_mutex_lock(&lock);
    struct camera *cam = find(fds[0].fd);
    if (!cam) {
        pthread_mutex_unlock(&lock);
        return real_poll(fds, count, timeout);
    }
    if (unplugged(cam) || !cam->streaming || !cam->queued) {
        /* uvcvideo: POLLERR when not streaming, POLLERR|POLLHUP after a disconnect. */
        fds[0].revents = unplugged(cam) ? POLLERR | POLLHUP : POLLERR;
        pthread_mutex_unlock(&lock);
        return 1;
    }
    if (stalled(cam)) {
        /* No frame will come: wait out the timeout (forever when it is -1), as a driver whose
         * camera hung does, but wake for an unplug. */
        pthread_mutex_unlock(&lock);
        for (long long waited = 0; timeout < 0 || waited < timeout; waited += 50) {
            sleep_nanos(50 * 1000000LL);
            pthread_mutex_lock(&lock);
            cam = find(fds[0].fd);
            int gone = !cam || unplugged(cam);
            pthread_mutex_unlock(&lock);
            if (gone) {
                fds[0].revents = POLLERR | POLLHUP;
                return 1;
            }
        }
        fds[0].revents = 0;
        return 0;
    }
    long long left = wait_left(cam);
    pthread_mutex_unlock(&lock);
    if (timeout >= 0 && left > (long long)timeout * 1000000LL) {
        sleep_nanos((long long)timeout * 1000000LL);
        fds[0].revents = 0;
        return 0;
    }
    sleep_nanos(left);
    fds[0].revents = fds[0].events & (POLLIN | POLLRDNORM);
    return 1;
}
