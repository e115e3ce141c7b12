#!/usr/bin/env bash
# Install sslkit and every plugin under plugins/ into ./.venv (created if missing), and the
# built-in real datasets from Debian where apt is available.
#   bash scripts/install.sh          # the toolkit (+ datasets)
#   bash scripts/install.sh --test   # plus pytest, the test-only fixture plugins and every optional
#                                    # extra (trackers, exports, Hugging Face datasets), so CI tests them
#   bash scripts/install.sh --data   # only the Debian datasets
# SSLKIT_SKIP_APT=1 skips the Debian datasets (the toolkit then falls back to its tiny built-in
# sets and says so on every run that would have used them).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

# Debian packages holding the built-in real data: package -> what it is and where it lands.
DEBIAN_DATA_PACKAGES=(dataset-fashion-mnist wordnet-base)
declare -A DATA_HELP=(
    [dataset-fashion-mnist]="Fashion-MNIST (vision + image-text default data) in /usr/share/datasets/fashion-mnist. Without Debian: put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz (github.com/zalandoresearch/fashion-mnist) in a folder and export SSLKIT_FASHION_MNIST=/that/folder"
    [wordnet-base]="WordNet 3.0 (text default data: glosses labelled by lexicographer class) in /usr/share/wordnet. Without Debian: get a WordNet 3.0 'dict' folder holding data.noun, data.verb, data.adj and data.adv (wordnet.princeton.edu's WordNet-3.0/dict, or NLTK's nltk_data/corpora/wordnet) and export WNSEARCHDIR=/that/dict (or WNHOME=/that/WordNet-3.0, whose dict/ is read)"
)

data_help() {
    echo "  What to do instead:" >&2
    for pkg in "$@"; do echo "   - ${pkg}: ${DATA_HELP[$pkg]:-see docs/}" >&2; done
}

# Installs the packages with apt-get as root or through passwordless sudo. Never fails the
# install: where it cannot, it says what the datasets are and how to provide them by hand.
install_debian_data() {
    local missing=()
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$pkg")
        fi
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "Datasets: Debian packages already installed: $*"
        return 0
    fi
    if [ "${SSLKIT_SKIP_APT:-0}" = "1" ]; then
        echo "Datasets: SSLKIT_SKIP_APT=1, not installing ${missing[*]}." >&2
        data_help "${missing[@]}"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "Datasets: apt-get is not available (not Debian/Ubuntu), so ${missing[*]} cannot be installed here." >&2
        data_help "${missing[@]}"
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" != "0" ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "Datasets: installing ${missing[*]} needs root. Run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
            data_help "${missing[@]}"
            return 0
        fi
    fi
    echo "Datasets: installing Debian packages ${missing[*]} (apt-get update first)"
    if ! "${sudo[@]}" apt-get update -qq; then
        echo "Datasets: apt-get update failed; continuing without ${missing[*]}." >&2
        data_help "${missing[@]}"
        return 0
    fi
    if ! DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        echo "Datasets: apt-get install ${missing[*]} failed; continuing without them." >&2
        data_help "${missing[@]}"
    fi
    return 0
}

if [ "${1:-}" = "--data" ]; then
    install_debian_data "${DEBIAN_DATA_PACKAGES[@]}"
    exit 0
fi
# A first install unpacks ~6 GB into .venv (torch's CUDA build) and stages ~2 GB of wheels in
# the temporary folder. Warn before starting rather than fail half-way with pip's bare
# "No space left on device".
warn_if_low_disk() {
    local need_gb=$1 where=$2 free_kb
    free_kb=$(df -Pk "$where" 2>/dev/null | awk 'NR==2 {print $4}') || true  # no df, or no such folder: no warning
    if [ -n "$free_kb" ] && [ "$free_kb" -lt $((need_gb * 1024 * 1024)) ]; then
        echo "Warning: $(( free_kb / 1024 / 1024 )) GB free on the disk holding $where; a first install needs about ${need_gb} GB there." >&2
        echo "  If pip stops with 'No space left on device', free space there, or point TMPDIR at a disk with room." >&2
    fi
}
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
    warn_if_low_disk 6 .
    warn_if_low_disk 2 "${TMPDIR:-/tmp}"
fi
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
core="."
if [ "${1:-}" = "--test" ]; then core=".[all]"; fi
packages=(-e "$core")
for plugin in plugins/*/; do
    if [ -f "${plugin}pyproject.toml" ]; then packages+=(-e "${plugin%/}"); fi
done
if [ "${1:-}" = "--test" ]; then
    packages+=(-e tests/fixtures/sslkit_testplugins -e examples/sslkit-vicreg -e examples/sslkit-timeseries pytest pytest-xdist)
fi
echo "Installing: ${packages[*]} (torch pinned by constraints.txt; the first install downloads ~5 GB)"
.venv/bin/python -m pip install --quiet -c constraints.txt "${packages[@]}"
install_debian_data "${DEBIAN_DATA_PACKAGES[@]}"
echo "Done. Try: .venv/bin/ssl list"
