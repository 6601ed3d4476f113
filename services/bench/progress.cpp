#include "services/bench/progress.h"

#include <unistd.h>

#include <cstdio>

namespace dg::bench {

bool stderr_is_tty() { return ::isatty(2) == 1; }

Progress::Progress(int total, bool enabled) : total_(total), enabled_(enabled) {}

Progress::~Progress() {
    if (!enabled_) return;
    std::lock_guard<std::mutex> l(mu_);
    draw_locked(true);
    std::fputc('\n', stderr);
}

void Progress::set_label(std::string label) {
    std::lock_guard<std::mutex> l(mu_);
    label_ = std::move(label);
    if (enabled_) draw_locked(true);
}

void Progress::done(bool ok) {
    std::lock_guard<std::mutex> l(mu_);
    ++done_;
    if (!ok) ++failed_;
    if (enabled_) draw_locked(done_ == total_);
}

void Progress::draw_locked(bool force) {
    const Clock::time_point now = Clock::now();
    if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    constexpr int kWidth = 30;
    const int filled = total_ > 0 ? done_ * kWidth / total_ : kWidth;
    std::string bar(size_t(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r\033[K[%s] %d/%d requests%s%s  %s", bar.c_str(), done_, total_,
                 failed_ ? ", failed " : "", failed_ ? std::to_string(failed_).c_str() : "", label_.c_str());
    std::fflush(stderr);
}

}  // namespace dg::bench
