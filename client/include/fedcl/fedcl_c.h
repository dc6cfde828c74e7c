/* fedcl's edge SDK as a C API: the functions of fedcl/client.h over opaque handles.
 *
 *   fedcl_options* options = fedcl_options_create();
 *   fedcl_options_set_string(options, FEDCL_OPTION_SERVER_ADDRESS, "127.0.0.1:50051");
 *   fedcl_options_set_string(options, FEDCL_OPTION_STORAGE_DIR, "/var/lib/myapp/fedcl");
 *   fedcl_options_set_int(options, FEDCL_OPTION_CLIENT_ID, 7);
 *   fedcl_client* client = NULL;
 *   fedcl_error* error = NULL;
 *   if (fedcl_client_create(options, &client, &error) != FEDCL_OK) {
 *     fprintf(stderr, "%s\n", fedcl_error_message(error));
 *     fedcl_error_destroy(error);
 *   }
 *   fedcl_options_destroy(options);          (the client keeps a copy)
 *   ...
 *   fedcl_prediction out[32];
 *   fedcl_client_predict_n(client, pixels, pixels_len, 32, out, 32, &error);
 *   fedcl_client_destroy(client);
 *
 * Conventions:
 *   - Every handle comes from a *_create function and goes back through the matching *_destroy;
 *     destroying NULL does nothing.
 *   - Functions that can fail return a fedcl_status (FEDCL_OK = 0; the other values follow
 *     google.rpc.Code, the codes of absl::Status). When `error` is not NULL and the call fails,
 *     *error receives a new fedcl_error the caller destroys; its message names what was wrong.
 *     Passing error = NULL is allowed: only the code is returned. On success *error is left
 *     unchanged. A NULL handle or required pointer gives FEDCL_INVALID_ARGUMENT naming it.
 *   - Output arguments (results, loss, predictions) are written only when the call returns
 *     FEDCL_OK.
 *   - Buffers are the caller's: images are `count` × fedcl_client_input_size() floats, pixels in
 *     [0, 1], row-major; labels are `count` int32 class indices; predictions are written into a
 *     caller array of `count` elements. The SDK keeps no pointer past the call.
 *   - Buffer lengths: each batch call has an `_n` variant that also takes the length of every
 *     buffer, in elements (`pixels_len` floats, `labels_len` int32s, `out_len` predictions), and
 *     refuses a `count` they cannot hold with FEDCL_INVALID_ARGUMENT before reading anything
 *     ("count 64 needs 50176 pixels; pixels_len is 7840"). The calls without `_n` cannot see a
 *     buffer's end and trust `count`: a count beyond the buffers there reads (and for predict,
 *     writes) past them. Both make every check that needs no data first (NULL pointers, count
 *     × input size overflowing, an empty batch, the memory budget), so a count the budget
 *     refuses is refused before any pixel or label is read, with or without `_n`. Prefer `_n`.
 *   - No C++ exception ever crosses this API: every function catches and returns
 *     FEDCL_INTERNAL (or FEDCL_RESOURCE_EXHAUSTED for out-of-memory).
 *   - The SDK never prints; give a log callback in the options to receive its messages.
 *
 * Thread safety: the same as fedcl/client.h. A fedcl_client may be used from several threads at
 * once (learning, prediction and adaptation are serialised on the model; a sync never holds the
 * model across a network call). A fedcl_options or fedcl_error belongs to one thread at a time.
 * Callbacks run on SDK threads and must not destroy the client.
 */
#ifndef FEDCL_CLIENT_INCLUDE_FEDCL_FEDCL_C_H_
#define FEDCL_CLIENT_INCLUDE_FEDCL_FEDCL_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FEDCL_C_EXPORT __attribute__((visibility("default")))
#else
#define FEDCL_C_EXPORT
#endif

typedef enum fedcl_status {
  FEDCL_OK = 0,
  FEDCL_CANCELLED = 1,
  FEDCL_UNKNOWN = 2,
  FEDCL_INVALID_ARGUMENT = 3,
  FEDCL_DEADLINE_EXCEEDED = 4,
  FEDCL_NOT_FOUND = 5,
  FEDCL_ALREADY_EXISTS = 6,
  FEDCL_PERMISSION_DENIED = 7,
  FEDCL_RESOURCE_EXHAUSTED = 8,
  FEDCL_FAILED_PRECONDITION = 9,
  FEDCL_ABORTED = 10,
  FEDCL_OUT_OF_RANGE = 11,
  FEDCL_UNIMPLEMENTED = 12,
  FEDCL_INTERNAL = 13,
  FEDCL_UNAVAILABLE = 14,
  FEDCL_DATA_LOSS = 15,
  FEDCL_UNAUTHENTICATED = 16
} fedcl_status;

/* "OK", "INVALID_ARGUMENT", ...; a static string ("INVALID_STATUS" for a value outside the
 * enum). */
FEDCL_C_EXPORT const char* fedcl_status_name(fedcl_status status);
/* The library's version, "major.minor.patch"; a static string. */
FEDCL_C_EXPORT const char* fedcl_version(void);

/* ---- Errors ----------------------------------------------------------------------------- */
typedef struct fedcl_error fedcl_error;
FEDCL_C_EXPORT fedcl_status fedcl_error_code(const fedcl_error* error);
/* fedcl_error_code(NULL) is FEDCL_OK; fedcl_error_message(NULL) is "". The message is valid
 * until the error is destroyed. */
FEDCL_C_EXPORT const char* fedcl_error_message(const fedcl_error* error);
FEDCL_C_EXPORT void fedcl_error_destroy(fedcl_error* error);

/* ---- Logging ------------------------------------------------------------------------------ */
typedef enum fedcl_log_level {
  FEDCL_LOG_DEBUG = 0,
  FEDCL_LOG_INFO = 1,
  FEDCL_LOG_WARNING = 2,
  FEDCL_LOG_ERROR = 3
} fedcl_log_level;
/* `message` is NUL-terminated and valid only during the call. */
typedef void (*fedcl_log_callback)(void* user_data, fedcl_log_level level, const char* message);

/* ---- Options ------------------------------------------------------------------------------ */
typedef struct fedcl_options fedcl_options;

typedef enum fedcl_option {
  /* Strings. */
  FEDCL_OPTION_SERVER_ADDRESS = 1, /* "host:port"; empty = offline device */
  FEDCL_OPTION_TLS_CA_FILE = 2,
  FEDCL_OPTION_TLS_SERVER_NAME = 3,
  FEDCL_OPTION_TOKEN = 4,
  FEDCL_OPTION_STORAGE_DIR = 5,  /* required */
  FEDCL_OPTION_METHOD = 6,       /* "sequential_adapter", "linear_head", "simple_cil",
                                    "fed_simple_cil", "lae", "fedins", "sema", "sema_replay" */
  FEDCL_OPTION_OOD_DETECTOR = 7, /* "energy", "max_softmax", "mahalanobis", "knn", ... */
  /* The method's own knobs as a scalar text proto, e.g. "expansion_tau: 1.5 confirm_batches: 3"
     (the knobs below are shorthands for some of them; keys given here win). New methods' knobs
     travel here, so the ABI does not grow with them. */
  FEDCL_OPTION_METHOD_OPTIONS = 8,
  /* Integers. */
  FEDCL_OPTION_CLIENT_ID = 20,
  FEDCL_OPTION_MEMORY_BUDGET_BYTES = 21,
  FEDCL_OPTION_THREADS = 22, /* threads one prediction may use */
  FEDCL_OPTION_OFFLINE_QUEUE_BYTES = 23,
  FEDCL_OPTION_AUTOSAVE_BATCHES = 24,
  FEDCL_OPTION_CALL_TIMEOUT_MS = 25,
  FEDCL_OPTION_SEED = 26,
  FEDCL_OPTION_NUM_CLASSES = 27,
  FEDCL_OPTION_SEMA_NEW_MODULE_STEPS = 28,
  FEDCL_OPTION_SEMA_MAX_ADAPTERS_PER_BLOCK = 29,
  FEDCL_OPTION_LAE_STEPS_PER_TASK = 30,
  FEDCL_OPTION_FEDINS_POOL_SIZE = 31,
  FEDCL_OPTION_FEDINS_TOP_K = 32,
  /* Reals. */
  FEDCL_OPTION_LEARNING_RATE = 40,
  FEDCL_OPTION_SEMA_EXPANSION_TAU = 41,
  FEDCL_OPTION_LAE_FRACTION_PER_TASK = 42
} fedcl_option;

FEDCL_C_EXPORT fedcl_options* fedcl_options_create(void);
FEDCL_C_EXPORT void fedcl_options_destroy(fedcl_options* options);
/* FEDCL_INVALID_ARGUMENT for an option of another type or an unknown one, a NULL `options` or
 * `value`, or an integer that does not fit the option (threads, autosave batches and classes are
 * C ints); the other checks are made by fedcl_client_create, whose error names the option.
 * `value` is copied. Client ids and seeds are unsigned: the int64's bits are taken as a uint64.
 * These functions report only a code (there is no fedcl_error argument). */
FEDCL_C_EXPORT fedcl_status fedcl_options_set_string(fedcl_options* options, fedcl_option option,
                                                     const char* value);
FEDCL_C_EXPORT fedcl_status fedcl_options_set_int(fedcl_options* options, fedcl_option option,
                                                  int64_t value);
FEDCL_C_EXPORT fedcl_status fedcl_options_set_double(fedcl_options* options, fedcl_option option,
                                                     double value);
/* `callback` may be NULL (messages are discarded). `user_data` is passed back unchanged. The
 * client calls it from its own threads too (background sync). */
FEDCL_C_EXPORT void fedcl_options_set_log_callback(fedcl_options* options,
                                                   fedcl_log_callback callback, void* user_data);

/* Device conditions: the app reports which hold now, as FEDCL_CONDITION_* bits; the SDK asks at
 * the start of every learn, adapt and sync call (the _n calls and fedcl_client_start_sync
 * included). A call whose requirements are not all met returns FEDCL_FAILED_PRECONDITION, names
 * the missing condition in the error's message, and changes nothing; queued learning stays queued.
 * `learn_requires` gates learn and adapt, `sync_requires` the syncs, each a set of the bits.
 * A NULL callback removes the gate. The callback must not call into the same client. */
enum {
  FEDCL_CONDITION_CHARGING = 1,
  FEDCL_CONDITION_UNMETERED_NETWORK = 2, /* Wi-Fi or wired, not a metered mobile link */
  FEDCL_CONDITION_IDLE = 4               /* the user is not using the device */
};
typedef unsigned (*fedcl_conditions_callback)(void* user_data);
FEDCL_C_EXPORT void fedcl_options_set_conditions(fedcl_options* options,
                                                 fedcl_conditions_callback callback,
                                                 void* user_data, unsigned learn_requires,
                                                 unsigned sync_requires);

/* ---- The client --------------------------------------------------------------------------- */
typedef struct fedcl_client fedcl_client;

typedef struct fedcl_prediction {
  int32_t label;
  float confidence;
  float ood_score;
  int32_t ood; /* 1 if flagged as out-of-distribution */
} fedcl_prediction;

typedef struct fedcl_sync_result {
  int64_t round;     /* the round the server had open, -1 if it asked to wait */
  int32_t submitted; /* 1 if the queued learning was acknowledged */
  int32_t round_closed;
  int64_t modules_downloaded;
  int64_t bytes_downloaded;
  int64_t bytes_uploaded;
  int64_t retry_after_ms;
} fedcl_sync_result;

typedef enum fedcl_sync_stage {
  FEDCL_SYNC_IDLE = 0,
  FEDCL_SYNC_CONNECTING = 1,
  FEDCL_SYNC_DOWNLOADING = 2,
  FEDCL_SYNC_SUBMITTING = 3,
  FEDCL_SYNC_DONE = 4,
  FEDCL_SYNC_FAILED = 5
} fedcl_sync_stage;

typedef struct fedcl_sync_progress {
  fedcl_sync_stage stage;
  int64_t bytes_done;
  int64_t bytes_total;
} fedcl_sync_progress;
typedef void (*fedcl_progress_callback)(void* user_data, const fedcl_sync_progress* progress);

typedef struct fedcl_stats {
  int64_t learn_batches;
  int64_t learned_samples;
  int64_t predictions;
  int64_t adapt_batches;
  int64_t syncs;
  int64_t submissions;
  int64_t rounds_closed;
  int64_t queue_records;
  int64_t queue_bytes;
  int64_t queue_records_dropped;
  int64_t memory_used_bytes;
  int64_t memory_budget_bytes;
  int64_t memory_refusals;
  int64_t last_round;
  int32_t backbone_loaded;
  int32_t state_restored;
  int32_t state_set_aside;
  int32_t state_from_backup;
} fedcl_stats;

/* Reads the stored state; never touches the network. *client is set only on FEDCL_OK. */
FEDCL_C_EXPORT fedcl_status fedcl_client_create(const fedcl_options* options, fedcl_client** client,
                                                fedcl_error** error);
/* Waits for a background sync to stop; does not save. */
FEDCL_C_EXPORT void fedcl_client_destroy(fedcl_client* client);

FEDCL_C_EXPORT fedcl_status fedcl_client_load_backbone(fedcl_client* client,
                                                       const char* checkpoint_path,
                                                       fedcl_error** error);
/* One learning step on a labelled batch of `count` images. `loss` may be NULL.
 * FEDCL_INVALID_ARGUMENT for an empty batch, a label outside [0, classes) or a pixel that is not
 * finite; FEDCL_RESOURCE_EXHAUSTED for a batch over the memory budget (nothing learned);
 * FEDCL_FAILED_PRECONDITION before a backbone is loaded. */
FEDCL_C_EXPORT fedcl_status fedcl_client_learn(fedcl_client* client, const float* pixels,
                                               const int32_t* labels, size_t count, float* loss,
                                               fedcl_error** error);
/* Predicts `count` images into out[0 .. count). Works through a batch over the memory budget in
 * chunks; FEDCL_RESOURCE_EXHAUSTED only when one image does not fit. */
FEDCL_C_EXPORT fedcl_status fedcl_client_predict(fedcl_client* client, const float* pixels,
                                                 size_t count, fedcl_prediction* out,
                                                 fedcl_error** error);
/* Label-free adaptation on `count` images. `samples_used` may be NULL. */
FEDCL_C_EXPORT fedcl_status fedcl_client_adapt(fedcl_client* client, const float* pixels,
                                               size_t count, int64_t* samples_used,
                                               fedcl_error** error);
/* Fits the OOD detector on `count` >= 10 in-distribution images and their labels. */
FEDCL_C_EXPORT fedcl_status fedcl_client_fit_detector(fedcl_client* client, const float* pixels,
                                                      const int32_t* labels, size_t count,
                                                      fedcl_error** error);

/* The same four calls given the buffers' lengths in elements (see "Buffer lengths" above):
 * FEDCL_INVALID_ARGUMENT, naming the argument, when count × fedcl_client_input_size() >
 * pixels_len, count > labels_len or count > out_len; nothing is read from or written to a buffer
 * then. A buffer longer than needed is fine (only the first `count` images are used). Otherwise
 * exactly the call without `_n`. */
FEDCL_C_EXPORT fedcl_status fedcl_client_learn_n(fedcl_client* client, const float* pixels,
                                                 size_t pixels_len, const int32_t* labels,
                                                 size_t labels_len, size_t count, float* loss,
                                                 fedcl_error** error);
FEDCL_C_EXPORT fedcl_status fedcl_client_predict_n(fedcl_client* client, const float* pixels,
                                                   size_t pixels_len, size_t count,
                                                   fedcl_prediction* out, size_t out_len,
                                                   fedcl_error** error);
FEDCL_C_EXPORT fedcl_status fedcl_client_adapt_n(fedcl_client* client, const float* pixels,
                                                 size_t pixels_len, size_t count,
                                                 int64_t* samples_used, fedcl_error** error);
FEDCL_C_EXPORT fedcl_status fedcl_client_fit_detector_n(fedcl_client* client, const float* pixels,
                                                        size_t pixels_len, const int32_t* labels,
                                                        size_t labels_len, size_t count,
                                                        fedcl_error** error);
/* Long learning calls, cancellable from another thread. A token is made, cancelled (from any
 * thread, at any time; it stays cancelled until reset) and freed by the app; NULL is ignored by
 * all four. fedcl_cancel_token_new returns NULL when out of memory. */
typedef struct fedcl_cancel_token fedcl_cancel_token;
FEDCL_C_EXPORT fedcl_cancel_token* fedcl_cancel_token_new(void);
FEDCL_C_EXPORT void fedcl_cancel_token_cancel(fedcl_cancel_token* token);
FEDCL_C_EXPORT void fedcl_cancel_token_reset(fedcl_cancel_token* token);
FEDCL_C_EXPORT void fedcl_cancel_token_free(fedcl_cancel_token* token);
/* fedcl_client_learn_n's images in batches of `batch_size` (0: all in one) over `epochs` passes
 * (in [1, 1000]), one step per batch, exactly as that many single-batch calls would learn them.
 * `cancel` (may be NULL) is asked before every batch: once it is cancelled the call undoes all
 * it did (modules, queued learning, the method's state, counters and the stored state are as
 * before the call) and returns FEDCL_CANCELLED. `loss` (the mean over the batches) and `batches`
 * (the steps taken) may be NULL. The memory budget applies to one batch. */
FEDCL_C_EXPORT fedcl_status fedcl_client_learn_batches(
    fedcl_client* client, const float* pixels, size_t pixels_len, const int32_t* labels,
    size_t labels_len, size_t count, size_t batch_size, int32_t epochs,
    const fedcl_cancel_token* cancel, float* loss, int64_t* batches, fedcl_error** error);
/* Class-incremental learning: the batches from now on hold these `count` classes (0: any).
 * `count` is the length of `classes` itself, so this call has no `_n` variant. */
FEDCL_C_EXPORT fedcl_status fedcl_client_begin_task(fedcl_client* client, const int32_t* classes,
                                                    size_t count, fedcl_error** error);

/* Blocking sync; `result` may be NULL. */
FEDCL_C_EXPORT fedcl_status fedcl_client_sync(fedcl_client* client, fedcl_sync_result* result,
                                              fedcl_error** error);
/* Non-blocking sync on a background thread; `callback` (may be NULL) hears each stage. */
FEDCL_C_EXPORT fedcl_status fedcl_client_start_sync(fedcl_client* client,
                                                    fedcl_progress_callback callback,
                                                    void* user_data, fedcl_error** error);
/* A NULL client reads as FEDCL_SYNC_IDLE. */
FEDCL_C_EXPORT void fedcl_client_sync_status(const fedcl_client* client,
                                             fedcl_sync_progress* progress);
FEDCL_C_EXPORT fedcl_status fedcl_client_wait_sync(fedcl_client* client, fedcl_sync_result* result,
                                                   fedcl_error** error);
FEDCL_C_EXPORT void fedcl_client_cancel_sync(fedcl_client* client);

FEDCL_C_EXPORT fedcl_status fedcl_client_save(fedcl_client* client, fedcl_error** error);
/* A NULL client reads as zeros, with last_round -1. */
FEDCL_C_EXPORT void fedcl_client_stats(const fedcl_client* client, fedcl_stats* stats);
/* 0 until a backbone is loaded. */
FEDCL_C_EXPORT int64_t fedcl_client_input_size(const fedcl_client* client);
FEDCL_C_EXPORT int32_t fedcl_client_num_classes(const fedcl_client* client);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* FEDCL_CLIENT_INCLUDE_FEDCL_FEDCL_C_H_ */
