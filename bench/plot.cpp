// SPDX-License-Identifier: MIT
// The SVG bar chart of plot.hpp: plain text, no dependencies. Each bar rises from the lowest
// power of ten of its panel, so its height is the logarithm of its value.
#include "plot.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <system_error>

namespace shmkit::bench {
namespace {

constexpr double kWidth = 1100;
constexpr double kLeft = 90;    // room for the axis labels
constexpr double kRight = 230;  // room for the legend
constexpr double kTop = 50;     // room for the title
constexpr double kPanelHeight = 300;
constexpr double kPanelGap = 90;  // panel title above, group names below
// Distinct colours (Tableau 20), one per series in order of first appearance.
constexpr const char* kColours[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
                                    "#1f77b4", "#17becf", "#8c564b", "#2ca02c"};

std::string escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string text(double x, double y, const std::string& s, const char* anchor = "start",
                 int size = 12) {
  return "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\" font-size=\"" + std::to_string(size) +
         "\" text-anchor=\"" + anchor + "\">" + escape(s) + "</text>\n";
}

class Chart {
 public:
  // Every series, in order of first appearance, with its colour.
  explicit Chart(const std::vector<PlotPanel>& panels) {
    for (const PlotPanel& p : panels) {
      for (const PlotGroup& g : p.groups) {
        for (const PlotBar& b : g.bars) {
          if (std::find(series_.begin(), series_.end(), b.series) != series_.end()) continue;
          series_.push_back(b.series);
          colours_.push_back(!b.colour.empty() ? b.colour
                                               : kColours[colours_.size() % std::size(kColours)]);
        }
      }
    }
  }

  const std::string& colour(const std::string& series) const {
    const auto i = std::find(series_.begin(), series_.end(), series) - series_.begin();
    return colours_[static_cast<std::size_t>(i)];
  }

  // Draws one panel whose plot area starts at `top`.
  std::string panel(const PlotPanel& p, double top) const {
    double lo = INFINITY, hi = 0;
    for (const PlotGroup& g : p.groups) {
      for (const PlotBar& b : g.bars) {
        lo = std::min(lo, b.value);
        hi = std::max(hi, b.value);
      }
    }
    // Half a decade below the smallest value, so that its bar does not vanish.
    const double lo_exp = std::floor(std::log10(lo) - 0.5);
    const double hi_exp = std::max(std::ceil(std::log10(hi)), lo_exp + 1);
    const double bottom = top + kPanelHeight;
    const double plot_width = kWidth - kLeft - kRight;
    auto y = [&](double v) {
      return bottom - (std::log10(v) - lo_exp) / (hi_exp - lo_exp) * kPanelHeight;
    };

    std::string out = text(kLeft, top - 12, p.title, "start", 14);
    for (double e = lo_exp; e <= hi_exp; ++e) {
      const double v = std::pow(10.0, e);
      out += "<line x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft + plot_width) + "\" y1=\"" +
             num(y(v)) + "\" y2=\"" + num(y(v)) + "\" stroke=\"#ddd\"/>\n";
      out += text(kLeft - 6, y(v) + 4, p.tick != nullptr ? p.tick(v) : num(v), "end", 11);
    }
    const double group_width = plot_width / static_cast<double>(p.groups.size());
    for (std::size_t gi = 0; gi < p.groups.size(); ++gi) {
      const PlotGroup& g = p.groups[gi];
      const double left = kLeft + group_width * static_cast<double>(gi);
      out += text(left + group_width / 2, bottom + 18, g.name, "middle", 13);
      if (g.bars.empty()) continue;
      const double bar = group_width * 0.85 / static_cast<double>(g.bars.size());
      double x = left + group_width * 0.075;
      for (const PlotBar& b : g.bars) {
        const double h = bottom - y(b.value);
        out += "<rect x=\"" + num(x) + "\" y=\"" + num(bottom - h) + "\" width=\"" +
               num(bar * 0.9) + "\" height=\"" + num(h) + "\" fill=\"" + colour(b.series) +
               "\"><title>" + escape(b.series + ", " + g.name + ": " + b.label) +
               "</title></rect>\n";
        x += bar;
      }
    }
    out += "<line x1=\"" + num(kLeft) + "\" x2=\"" + num(kLeft) + "\" y1=\"" + num(top) +
           "\" y2=\"" + num(bottom) + "\" stroke=\"#333\"/>\n";
    return out;
  }

  std::string legend(double top) const {
    std::string out;
    double y = top;
    for (std::size_t i = 0; i < series_.size(); ++i) {
      const double x = kWidth - kRight + 20;
      out += "<rect x=\"" + num(x) + "\" y=\"" + num(y - 10) +
             "\" width=\"12\" height=\"12\" "
             "fill=\"" +
             colours_[i] + "\"/>\n";
      out += text(x + 18, y, series_[i]);
      y += 20;
    }
    return out;
  }

 private:
  std::vector<std::string> series_;
  std::vector<std::string> colours_;  // of series_[i]
};

}  // namespace

void write_svg_chart(const std::string& path, const std::string& title,
                     const std::vector<PlotPanel>& panels) {
  std::vector<const PlotPanel*> drawn;
  for (const PlotPanel& p : panels) {
    const bool any = std::any_of(p.groups.begin(), p.groups.end(),
                                 [](const PlotGroup& g) { return !g.bars.empty(); });
    if (any) drawn.push_back(&p);
  }
  Chart chart(panels);
  const double height = kTop + static_cast<double>(drawn.size()) * (kPanelHeight + kPanelGap) + 20;
  std::string svg = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + num(kWidth) + "\" height=\"" +
         num(height) + "\" viewBox=\"0 0 " + num(kWidth) + " " + num(height) +
         "\" font-family=\"sans-serif\">\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += text(kLeft, 24, title, "start", 16);
  double top = kTop + 40;
  for (const PlotPanel* p : drawn) {
    svg += chart.panel(*p, top);
    top += kPanelHeight + kPanelGap;
  }
  svg += chart.legend(kTop + 40);
  svg += "</svg>\n";

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << svg;
  out.close();
  if (!out) throw std::system_error(errno, std::generic_category(), "write " + path);
}

}  // namespace shmkit::bench
