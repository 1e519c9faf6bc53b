#!/usr/bin/env bash
# Checks that the Go and Java bindings expose exactly what include/gradtau.h declares:
#   1. the generated files (scripts/gen_bindings.py) are up to date with the header;
#   2. independently of that generator, a grep of the header: every GRADTAU_* status and
#      enum value has a Go constant and a Java enum constant with the same number, and every
#      field of every *_options struct is reachable from Go (a `c:"field"` tag), from the JNI
#      glue's field table and from the Java options class.
# The drift tests of each binding (bindings/go/drift_test.go, DriftTest.java) then compare
# against the built library at run time. Needs: python3, gofmt, grep, sed.
set -euo pipefail
cd "$(dirname "$0")/.."

H=include/gradtau.h
GO=bindings/go
JAVA=bindings/java/src/main/java/dev/gradtau
JNI=bindings/java/src/main/c/gradtau_jni_options.h
problems=0
problem() { echo "check-bindings: $*" >&2; problems=$((problems + 1)); }

echo "generated files vs $H"
python3 scripts/gen_bindings.py --check || problems=$((problems + 1))

echo "statuses"
statuses=$(sed -n '/^enum gradtau_status/,/^};/p' "$H" | grep -oE 'GRADTAU_[A-Z0-9_]+ = -?[0-9]+')
[ -n "$statuses" ] || problem "no status found in $H"
while read -r name _ num; do
  grep -qE "Status = C\.$name\$" "$GO/status_gen.go" || problem "Go has no constant for $name"
  grep -qE "^    ${name#GRADTAU_}\($num\),\$" "$JAVA/Status.java" || problem "Java's Status lacks ${name#GRADTAU_}($num)"
done <<< "$statuses"
[ "$(grep -cE '^    [A-Z0-9_]+\(-?[0-9]+\),$' "$JAVA/Status.java")" = "$(wc -l <<< "$statuses")" ] \
  || problem "Java's Status has constants the header lacks"

echo "enum values"
# Every `#define GRADTAU_<PREFIX>_<NAME> <n>` whose prefix a `typedef int32_t` names.
prefixes=$(grep -B3 -E '^typedef int32_t gradtau_' "$H" | grep -oE '`GRADTAU_[A-Z0-9_]+_\*`' | tr -d '`*' || true)
[ -n "$prefixes" ] || problem "no enum typedef found in $H"
for prefix in $prefixes; do
  values=$(grep -oE "^#define ${prefix}[A-Z0-9_]+ -?[0-9]+\$" "$H" | awk '{print $2, $3}')
  [ -n "$values" ] || problem "no $prefix* value in $H"
  while read -r name num; do
    grep -qE "= C\.$name\$" "$GO/enums_gen.go" || problem "Go has no constant for $name"
    grep -lqE "^    ${name#"$prefix"}\($num\)[,;]\$" "$JAVA"/*.java || problem "Java has no enum constant for $name"
  done <<< "$values"
done

echo "options fields"
structs=$(grep -oE '^typedef struct gradtau_[a-z0-9_]+_options \{' "$H" | awk '{print $3}')
[ -n "$structs" ] || problem "no options struct found in $H"
for struct in $structs; do
  class=$(sed -E 's/^gradtau_//; s/(^|_)([a-z])/\U\2/g' <<< "$struct")
  fields=$(sed -n "/^typedef struct $struct {/,/^} $struct;/p" "$H" | grep -vE '^\s*//|typedef|^\}' \
    | grep -oE '\b[a-z0-9_]+;$' | tr -d ';')
  go_struct=$(sed -n "/^type $class struct {/,/^}/p" "$GO/options_gen.go")
  for f in $fields; do
    grep -qF "JNI_OPTION_FIELD($struct, $f," "$JNI" || problem "the JNI table lacks $struct.$f"
    [ "$f" = struct_size ] && continue
    grep -qF "\`c:\"$f\"\`" <<< "$go_struct" || problem "Go's $class lacks $struct.$f"
    grep -qF "Map.entry(\"$f\"," "$JAVA/$class.java" || problem "Java's $class lacks $struct.$f"
  done
done

if [ "$problems" -ne 0 ]; then
  echo "check-bindings: $problems problem(s); regenerate with python3 scripts/gen_bindings.py" >&2
  exit 1
fi
echo "check-bindings: ok"
