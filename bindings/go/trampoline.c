// C side of the progress callback and publish hook bridges. It lives in a .c file because a
// Go file with an //export directive may only declare C functions in its preamble, not
// define them.
#include <stdint.h>

#include "gradtau.h"
#include "_cgo_export.h"

// The cgo.Handle travels through gradtau's void *user_data as an integer: converting a
// uintptr to unsafe.Pointer on the Go side is what `go vet` rightly flags, so the cast is
// done here where it is plain C.
static int32_t gradtau_go_progress(const gradtau_progress *progress, void *user_data) {
    return gradtauGoProgress((gradtau_progress *)progress, (uintptr_t)user_data);
}

gradtau_status gradtau_go_unlearn(gradtau_model *model, const gradtau_dataset *forget,
                                  const gradtau_dataset *retain, const gradtau_dataset *val,
                                  const gradtau_unlearn_options *options, uintptr_t handle,
                                  gradtau_report **report_out) {
    return gradtau_unlearn(model, forget, retain, val, options,
                           handle ? gradtau_go_progress : NULL, (void *)handle, report_out);
}

gradtau_status gradtau_go_train(gradtau_model *model, const gradtau_dataset *data,
                                const gradtau_train_options *options, uintptr_t handle,
                                gradtau_report **report_out) {
    return gradtau_train(model, data, options, handle ? gradtau_go_progress : NULL,
                         (void *)handle, report_out);
}

// The publish hook bridge: the cgo.Handle of the model's hook state travels as user_data,
// converted here for the same reason as above.
static int32_t gradtau_go_publish(gradtau_publish_phase phase, void *user_data) {
    return gradtauGoPublish(phase, (uintptr_t)user_data);
}

gradtau_status gradtau_go_set_publish_hook(gradtau_model *model, uintptr_t handle) {
    return gradtau_model_set_publish_hook(model, handle ? gradtau_go_publish : NULL,
                                          (void *)handle);
}
