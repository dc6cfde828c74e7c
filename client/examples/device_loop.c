/* A device written against the C API alone (fedcl/fedcl_c.h): it streams a slice of an IDX image
 * file (Fashion-MNIST, gzip or plain) batch by batch, predicts each batch before learning from it
 * (prequential accuracy: every sample is scored by a model that has not seen it yet), learns it,
 * and every few batches syncs with a fedcl-server, carrying on offline when the server cannot be
 * reached.
 *
 *   device_loop --server=127.0.0.1:50051 --client_id=3 --token_file=client-3.token \
 *       --storage_dir=/tmp/device-3 \
 *       --images=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
 *       --labels=/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz \
 *       --offset=3000 --samples=1000 --rounds=2 --max_seconds=60
 *
 * --method picks the SDK's learner (e.g. sema, which grows an adapter when the data shifts);
 * --invert_after=N inverts the contrast of every image (x -> 1 - x) after N batches, a domain
 * shift; --max_batches=N stops after N learned batches; --deliver_at_end=1 then syncs until the
 * learning queued since the last acknowledged submission (and any adapter grown since) has
 * reached the server, within --max_seconds.
 *
 * Without --backbone the first sync downloads the server's backbone. The slice is streamed once,
 * or round and round while --rounds or --max_seconds is given. The last line on stdout is a
 * summary:
 *
 *   submissions=2 batches=40 prequential_accuracy=0.7100 queue_dropped=0 state_restored=1
 *   state_set_aside=0 life_batches=140
 *
 * (one line; life_batches counts every batch the device has learned, over restarts)
 *
 * Exit status: 0 when the device ran to its end (and made --rounds acknowledged submissions if
 * that was asked), 1 when it stopped short (deadline), 2 for bad arguments or a fatal error.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#include "fedcl/fedcl_c.h"

typedef struct {
  const char* server;
  long long client_id;
  const char* token_file;
  const char* tls_ca;
  const char* tls_server_name;
  const char* storage_dir;
  const char* backbone;
  const char* images;
  const char* labels;
  long long offset;
  long long samples; /* 0: to the end of the file */
  long long batch;
  long long sync_every; /* batches between syncs */
  long long rounds;     /* 0: no target */
  double max_seconds;   /* 0: no deadline */
  long long memory_budget_mb;
  long long autosave_batches; /* 0: the SDK's default */
  const char* method;         /* NULL: the SDK's default */
  long long invert_after;     /* -1: never */
  long long max_batches;      /* 0: no limit */
  long long deliver_at_end;   /* 1: sync until the queue is delivered before exiting */
} Args;

static const char* const kUsage =
    "usage: device_loop --storage_dir=DIR --images=IDX --labels=IDX [--server=HOST:PORT]\n"
    "  [--client_id=N] [--token_file=FILE] [--tls_ca=PEM] [--tls_server_name=NAME]\n"
    "  [--backbone=CKPT] [--offset=N] [--samples=N] [--batch=32] [--sync_every=10]\n"
    "  [--rounds=N] [--max_seconds=S] [--memory_budget_mb=48] [--autosave_batches=N]\n"
    "  [--method=NAME] [--invert_after=BATCHES] [--max_batches=N] [--deliver_at_end=1]\n";

static int ParseInt(const char* text, long long* out) {
  char* end = NULL;
  errno = 0;
  *out = strtoll(text, &end, 10);
  return errno == 0 && end != text && *end == '\0';
}

static int ParseArgs(int argc, char** argv, Args* args) {
  int i;
  memset(args, 0, sizeof(*args));
  args->server = "";
  args->batch = 32;
  args->sync_every = 10;
  args->memory_budget_mb = 48;
  args->autosave_batches = 0;
  args->invert_after = -1;
  for (i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    const char* eq = strchr(arg, '=');
    size_t name_length;
    const char* value;
    int ok = 1;
    if (strncmp(arg, "--", 2) != 0 || eq == NULL) {
      fprintf(stderr, "device_loop: expected --name=value, got '%s'\n", arg);
      return 0;
    }
    name_length = (size_t)(eq - arg - 2);
    value = eq + 1;
#define FLAG_IS(name) (name_length == strlen(name) && strncmp(arg + 2, name, name_length) == 0)
    if (FLAG_IS("server")) {
      args->server = value;
    } else if (FLAG_IS("client_id")) {
      ok = ParseInt(value, &args->client_id);
    } else if (FLAG_IS("token_file")) {
      args->token_file = value;
    } else if (FLAG_IS("tls_ca")) {
      args->tls_ca = value;
    } else if (FLAG_IS("tls_server_name")) {
      args->tls_server_name = value;
    } else if (FLAG_IS("storage_dir")) {
      args->storage_dir = value;
    } else if (FLAG_IS("backbone")) {
      args->backbone = value;
    } else if (FLAG_IS("images")) {
      args->images = value;
    } else if (FLAG_IS("labels")) {
      args->labels = value;
    } else if (FLAG_IS("offset")) {
      ok = ParseInt(value, &args->offset) && args->offset >= 0;
    } else if (FLAG_IS("samples")) {
      ok = ParseInt(value, &args->samples) && args->samples >= 0;
    } else if (FLAG_IS("batch")) {
      ok = ParseInt(value, &args->batch) && args->batch > 0;
    } else if (FLAG_IS("sync_every")) {
      ok = ParseInt(value, &args->sync_every) && args->sync_every > 0;
    } else if (FLAG_IS("rounds")) {
      ok = ParseInt(value, &args->rounds) && args->rounds >= 0;
    } else if (FLAG_IS("max_seconds")) {
      char* end = NULL;
      args->max_seconds = strtod(value, &end);
      ok = end != value && *end == '\0' && args->max_seconds >= 0;
    } else if (FLAG_IS("memory_budget_mb")) {
      ok = ParseInt(value, &args->memory_budget_mb) && args->memory_budget_mb > 0;
    } else if (FLAG_IS("autosave_batches")) {
      ok = ParseInt(value, &args->autosave_batches) && args->autosave_batches > 0;
    } else if (FLAG_IS("method")) {
      args->method = value;
    } else if (FLAG_IS("invert_after")) {
      ok = ParseInt(value, &args->invert_after) && args->invert_after >= 0;
    } else if (FLAG_IS("max_batches")) {
      ok = ParseInt(value, &args->max_batches) && args->max_batches > 0;
    } else if (FLAG_IS("deliver_at_end")) {
      ok = ParseInt(value, &args->deliver_at_end) &&
           (args->deliver_at_end == 0 || args->deliver_at_end == 1);
    } else {
      fprintf(stderr, "device_loop: unknown flag '%s'\n", arg);
      return 0;
    }
#undef FLAG_IS
    if (!ok) {
      fprintf(stderr, "device_loop: bad value in '%s'\n", arg);
      return 0;
    }
  }
  if (args->storage_dir == NULL || args->images == NULL || args->labels == NULL) {
    fprintf(stderr, "device_loop: --storage_dir, --images and --labels are required\n");
    return 0;
  }
  return 1;
}

static double Now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void SleepMs(long ms) {
  struct timespec t;
  t.tv_sec = ms / 1000;
  t.tv_nsec = (ms % 1000) * 1000000L;
  nanosleep(&t, NULL);
}

/* The SDK's messages, on stderr with the device's prefix. */
static void LogToStderr(void* user_data, fedcl_log_level level, const char* message) {
  static const char* const kLevels[] = {"debug", "info", "warning", "error"};
  const char* name = level >= FEDCL_LOG_DEBUG && level <= FEDCL_LOG_ERROR ? kLevels[level] : "?";
  fprintf(stderr, "[%s] %s: %s\n", (const char*)user_data, name, message);
}

/* Reports a failed call and frees its error; returns the code. */
static fedcl_status Report(const char* what, fedcl_status status, fedcl_error* error) {
  if (status != FEDCL_OK) {
    fprintf(stderr, "device_loop: %s: %s: %s\n", what, fedcl_status_name(status),
            fedcl_error_message(error));
  }
  fedcl_error_destroy(error);
  return status;
}

/* Reads the first line of `path` into a new string (without the line break); NULL on error. */
static char* ReadToken(const char* path) {
  FILE* file = fopen(path, "r");
  char* token;
  size_t length;
  if (file == NULL) return NULL;
  token = malloc(4096);
  if (token == NULL || fgets(token, 4096, file) == NULL) {
    free(token);
    fclose(file);
    return NULL;
  }
  fclose(file);
  length = strlen(token);
  while (length > 0 &&
         (token[length - 1] == '\n' || token[length - 1] == '\r' || token[length - 1] == ' ')) {
    token[--length] = '\0';
  }
  return token;
}

/* ---- IDX files (gzip or plain: gzread reads both) ---------------------------------------- */

typedef struct {
  gzFile file;
  long long count;        /* items in the file */
  long long item_bytes;   /* bytes per item */
  long long header_bytes; /* where item 0 starts */
} IdxFile;

static int ReadBigEndian32(gzFile file, uint32_t* out) {
  unsigned char b[4];
  if (gzread(file, b, 4) != 4) return 0;
  *out = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
  return 1;
}

/* Opens an IDX file of unsigned bytes with `dims` dimensions. */
static int OpenIdx(const char* path, int dims, IdxFile* idx) {
  uint32_t magic, size;
  int d;
  idx->file = gzopen(path, "rb");
  if (idx->file == NULL) {
    fprintf(stderr, "device_loop: cannot open %s\n", path);
    return 0;
  }
  if (!ReadBigEndian32(idx->file, &magic) || magic != (uint32_t)(0x0800 | dims)) {
    fprintf(stderr, "device_loop: %s is not an IDX file of %d-D unsigned bytes\n", path, dims);
    return 0;
  }
  idx->item_bytes = 1;
  for (d = 0; d < dims; ++d) {
    if (!ReadBigEndian32(idx->file, &size)) {
      fprintf(stderr, "device_loop: %s: truncated header\n", path);
      return 0;
    }
    if (d == 0) {
      idx->count = size;
    } else {
      idx->item_bytes *= size;
    }
  }
  idx->header_bytes = 4 + 4 * (long long)dims;
  return 1;
}

/* Positions the file at item `index`. */
static int SeekIdx(IdxFile* idx, long long index) {
  return gzseek(idx->file, (z_off_t)(idx->header_bytes + index * idx->item_bytes), SEEK_SET) >= 0;
}

/* ---- The device ------------------------------------------------------------------------- */

typedef struct {
  long long submissions;
  long long batches;
  long long predicted;
  long long correct;
} Totals;

/* Syncs once. Returns 1 to carry on, 0 for a fatal error. Server outages and transient refusals
 * are not fatal: learning stays queued and the next sync tries again. */
static int SyncOnce(fedcl_client* client, Totals* totals) {
  fedcl_sync_result result;
  fedcl_error* error = NULL;
  const fedcl_status status = fedcl_client_sync(client, &result, &error);
  switch (status) {
    case FEDCL_OK:
      if (result.submitted) ++totals->submissions;
      fedcl_error_destroy(error);
      return 1;
    case FEDCL_UNAVAILABLE:
    case FEDCL_DEADLINE_EXCEEDED:
    case FEDCL_ABORTED:
    case FEDCL_CANCELLED:
    case FEDCL_RESOURCE_EXHAUSTED:
      fprintf(stderr, "device_loop: sync: %s (%s); carrying on offline\n",
              fedcl_status_name(status), fedcl_error_message(error));
      fedcl_error_destroy(error);
      return 1;
    default:
      Report("sync", status, error);
      return 0;
  }
}

/* Without a backbone nothing can be learned: sync until the server has sent one. */
static int WaitForBackbone(fedcl_client* client, Totals* totals, double deadline) {
  while (fedcl_client_input_size(client) == 0) {
    if (!SyncOnce(client, totals)) return 0;
    if (fedcl_client_input_size(client) > 0) break;
    if (Now() > deadline) {
      fprintf(stderr, "device_loop: no backbone from the server before the deadline\n");
      return 0;
    }
    SleepMs(200);
  }
  return 1;
}

/* --deliver_at_end: syncs until the learning queued since the last acknowledged submission
 * (and any adapter grown since, which the sync proposes first) has reached the server, or the
 * deadline passes. A device that stops early keeps its learning for a later run either way. */
static int DeliverQueued(fedcl_client* client, Totals* totals, double deadline) {
  fedcl_stats stats;
  fedcl_client_stats(client, &stats);
  while (stats.queue_records > 0) {
    if (Now() > deadline) {
      fprintf(stderr, "device_loop: %lld queued updates not delivered before the deadline\n",
              (long long)stats.queue_records);
      return 1;
    }
    if (!SyncOnce(client, totals)) return 0;
    fedcl_client_stats(client, &stats);
    if (stats.queue_records > 0) SleepMs(200);
  }
  return 1;
}

static fedcl_client* CreateClient(const Args* args, const char* token, const char* log_prefix) {
  fedcl_options* options = fedcl_options_create();
  fedcl_client* client = NULL;
  fedcl_error* error = NULL;
  if (options == NULL) return NULL;
  fedcl_options_set_string(options, FEDCL_OPTION_SERVER_ADDRESS, args->server);
  fedcl_options_set_string(options, FEDCL_OPTION_STORAGE_DIR, args->storage_dir);
  if (token != NULL) fedcl_options_set_string(options, FEDCL_OPTION_TOKEN, token);
  if (args->tls_ca != NULL) {
    fedcl_options_set_string(options, FEDCL_OPTION_TLS_CA_FILE, args->tls_ca);
  }
  if (args->tls_server_name != NULL) {
    fedcl_options_set_string(options, FEDCL_OPTION_TLS_SERVER_NAME, args->tls_server_name);
  }
  fedcl_options_set_int(options, FEDCL_OPTION_CLIENT_ID, args->client_id);
  if (args->method != NULL) fedcl_options_set_string(options, FEDCL_OPTION_METHOD, args->method);
  fedcl_options_set_int(options, FEDCL_OPTION_MEMORY_BUDGET_BYTES,
                        args->memory_budget_mb * 1024 * 1024);
  if (args->autosave_batches > 0) {
    fedcl_options_set_int(options, FEDCL_OPTION_AUTOSAVE_BATCHES, args->autosave_batches);
  }
  fedcl_options_set_log_callback(options, LogToStderr, (void*)log_prefix);
  Report("create", fedcl_client_create(options, &client, &error), error);
  fedcl_options_destroy(options);
  return client;
}

/* Streams the slice; returns the exit status. */
static int Run(const Args* args, fedcl_client* client, IdxFile* images, IdxFile* labels,
               Totals* totals, double deadline) {
  const long long input_size = fedcl_client_input_size(client);
  const long long end = args->samples > 0 && args->offset + args->samples < images->count
                            ? args->offset + args->samples
                            : images->count;
  const int cyclic = args->rounds > 0 || args->max_seconds > 0;
  unsigned char* raw = malloc((size_t)(args->batch * input_size));
  unsigned char* raw_labels = malloc((size_t)args->batch);
  const size_t pixels_len = (size_t)(args->batch * input_size);
  float* pixels = malloc(sizeof(float) * pixels_len);
  int32_t* batch_labels = malloc(sizeof(int32_t) * (size_t)args->batch);
  fedcl_prediction* predictions = malloc(sizeof(fedcl_prediction) * (size_t)args->batch);
  long long next = args->offset;
  int code = 0;
  if (raw == NULL || raw_labels == NULL || pixels == NULL || batch_labels == NULL ||
      predictions == NULL) {
    fprintf(stderr, "device_loop: out of memory\n");
    code = 2;
  }
  while (code == 0) {
    long long n = args->batch, i;
    fedcl_error* error = NULL;
    float loss = 0.0f;
    fedcl_status status;
    if (args->rounds > 0 && totals->submissions >= args->rounds) break;
    if (args->max_batches > 0 && totals->batches >= args->max_batches) break;
    if (args->max_seconds > 0 && Now() > deadline) {
      code = args->rounds > 0 ? 1 : 0; /* a target not met by the deadline is a failure */
      break;
    }
    if (next >= end) {
      if (!cyclic) break;
      next = args->offset;
    }
    if (next + n > end) n = end - next;
    if (!SeekIdx(images, next) || !SeekIdx(labels, next) ||
        gzread(images->file, raw, (unsigned)(n * input_size)) != (int)(n * input_size) ||
        gzread(labels->file, raw_labels, (unsigned)n) != (int)n) {
      fprintf(stderr, "device_loop: cannot read samples %lld..%lld\n", next, next + n);
      code = 2;
      break;
    }
    next += n;
    for (i = 0; i < n * input_size; ++i) pixels[i] = (float)raw[i] / 255.0f;
    if (args->invert_after >= 0 && totals->batches >= args->invert_after)
      for (i = 0; i < n * input_size; ++i) pixels[i] = 1.0f - pixels[i];
    for (i = 0; i < n; ++i) batch_labels[i] = raw_labels[i];

    /* The _n calls are told the buffers' lengths and refuse a count beyond them. */
    status = fedcl_client_predict_n(client, pixels, pixels_len, (size_t)n, predictions,
                                    (size_t)args->batch, &error);
    if (Report("predict", status, error) != FEDCL_OK) {
      code = 2;
      break;
    }
    for (i = 0; i < n; ++i) totals->correct += predictions[i].label == batch_labels[i];
    totals->predicted += n;

    error = NULL;
    status = fedcl_client_learn_n(client, pixels, pixels_len, batch_labels, (size_t)args->batch,
                                  (size_t)n, &loss, &error);
    if (Report("learn", status, error) != FEDCL_OK) {
      code = 2;
      break;
    }
    ++totals->batches;
    if (args->server[0] != '\0' && totals->batches % args->sync_every == 0 &&
        !SyncOnce(client, totals)) {
      code = 2;
    }
  }
  free(raw);
  free(raw_labels);
  free(pixels);
  free(batch_labels);
  free(predictions);
  return code;
}

int main(int argc, char** argv) {
  Args args;
  IdxFile images, labels;
  Totals totals;
  fedcl_client* client;
  fedcl_stats stats;
  char* token = NULL;
  char log_prefix[64];
  double start, deadline;
  int code;
  if (!ParseArgs(argc, argv, &args)) {
    fputs(kUsage, stderr);
    return 2;
  }
  memset(&totals, 0, sizeof(totals));
  memset(&images, 0, sizeof(images));
  memset(&labels, 0, sizeof(labels));
  start = Now();
  /* Without a deadline, waiting for the first backbone is still bounded. */
  deadline = start + (args.max_seconds > 0 ? args.max_seconds : 60.0);
  if (args.token_file != NULL && (token = ReadToken(args.token_file)) == NULL) {
    fprintf(stderr, "device_loop: cannot read a token from %s\n", args.token_file);
    return 2;
  }
  snprintf(log_prefix, sizeof(log_prefix), "fedcl client %lld", args.client_id);
  client = CreateClient(&args, token, log_prefix);
  free(token);
  if (client == NULL) return 2;

  code = 2;
  if (args.backbone != NULL) {
    fedcl_error* error = NULL;
    if (Report("load backbone", fedcl_client_load_backbone(client, args.backbone, &error), error) !=
        FEDCL_OK) {
      goto done;
    }
  }
  if (fedcl_client_input_size(client) == 0 && args.server[0] == '\0') {
    fprintf(stderr, "device_loop: no backbone: give --backbone or --server\n");
    goto done;
  }
  if (!WaitForBackbone(client, &totals, deadline)) goto done;
  if (!OpenIdx(args.images, 3, &images) || !OpenIdx(args.labels, 1, &labels)) goto done;
  if (images.item_bytes != fedcl_client_input_size(client) || labels.count != images.count ||
      args.offset >= images.count) {
    fprintf(stderr,
            "device_loop: %s has %lld images of %lld values, %s %lld labels; the model wants %lld "
            "values; offset %lld\n",
            args.images, images.count, images.item_bytes, args.labels, labels.count,
            (long long)fedcl_client_input_size(client), args.offset);
    goto done;
  }
  code = Run(&args, client, &images, &labels, &totals, deadline);
  if (code == 0 && args.deliver_at_end && args.server[0] != '\0' &&
      !DeliverQueued(client, &totals, deadline)) {
    code = 2;
  }
  {
    fedcl_error* error = NULL;
    if (Report("save", fedcl_client_save(client, &error), error) != FEDCL_OK) code = 2;
  }

done:
  fedcl_client_stats(client, &stats);
  if (images.file != NULL) gzclose(images.file);
  if (labels.file != NULL) gzclose(labels.file);
  fedcl_client_destroy(client);
  printf(
      "submissions=%lld batches=%lld prequential_accuracy=%.4f queue_dropped=%lld "
      "state_restored=%d state_set_aside=%d life_batches=%lld\n",
      totals.submissions, totals.batches,
      totals.predicted > 0 ? (double)totals.correct / (double)totals.predicted : 0.0,
      (long long)stats.queue_records_dropped, (int)stats.state_restored, (int)stats.state_set_aside,
      (long long)stats.learn_batches);
  return code;
}
