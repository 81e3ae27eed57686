#!/usr/bin/env bash
# Installs what step-gpu needs to build and run: a C compiler for cgo (the
# WebGPU binding links a static wgpu-native) and a Vulkan loader and driver.
# On a machine without a GPU driver it installs Mesa's lavapipe, the CPU
# Vulkan adapter, so every command and test runs (slowly) on the CPU.
set -euo pipefail

need_install=()
have_vulkan_loader() {
  { ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null; } | grep -q 'libvulkan\.so\.1' && return 0
  compgen -G '/usr/lib/*/libvulkan.so.1' >/dev/null || compgen -G '/usr/lib/libvulkan.so.1' >/dev/null
}
have_icd() { compgen -G '/usr/share/vulkan/icd.d/*.json' >/dev/null || compgen -G '/etc/vulkan/icd.d/*.json' >/dev/null; }

command -v gcc >/dev/null 2>&1 || need_install+=(gcc libc6-dev)
have_vulkan_loader || need_install+=(libvulkan1)
have_icd || need_install+=(mesa-vulkan-drivers)

if ((${#need_install[@]})); then
  echo "setup: installing ${need_install[*]}" >&2
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: no apt-get here; install a Vulkan driver (GPU vendor driver, or Mesa's lavapipe) and a C compiler by hand" >&2
    exit 1
  fi
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_install[@]}" >/dev/null
fi
command -v go >/dev/null 2>&1 || { echo "setup: Go 1.26 is required (https://go.dev/dl)" >&2; exit 1; }
echo "setup: ok ($(go version | cut -d' ' -f3), Vulkan ICDs: $(ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null | grep -c json))" >&2
