# Finds the shared sample data and models (never committed) and exports APG_SHARED_DIR:
# the variable when set, else ../shared beside the checkout, else /work/shared.
if [[ -z "${APG_SHARED_DIR:-}" ]]; then
    for candidate in "$ROOT/../shared" /work/shared; do
        if [[ -d "$candidate/data" ]]; then
            APG_SHARED_DIR="$(cd "$candidate" && pwd)"
            break
        fi
    done
fi
export APG_SHARED_DIR="${APG_SHARED_DIR:-$ROOT/../shared}"
