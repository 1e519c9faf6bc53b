/* The C consumer (also built with pkg-config by scripts/test-native.sh). */
#include <gradtau.h>

#include <stdio.h>
#include <string.h>

int main(void) {
    if (gradtau_abi_version() != GRADTAU_ABI_VERSION) return 1;
    const char *spec = gradtau_digits_mlp_spec();
    gradtau_model *model = NULL;
    gradtau_status s = gradtau_model_new(spec, strlen(spec), &model);
    if (s != GRADTAU_OK) {
        fprintf(stderr, "%s: %s\n", gradtau_status_name(s), gradtau_last_error_message());
        return 1;
    }
    printf("gradtau %s: %zu parameters\n", gradtau_version(), gradtau_model_param_count(model));
    size_t n = gradtau_model_param_count(model);
    gradtau_model_free(model);
    return n == 6 ? 0 : 1;
}
