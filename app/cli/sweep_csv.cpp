#include "sweep_csv.h"

#include "quantlens/core/error.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/io/text_file.h"

#include <cmath>
#include <map>
#include <sstream>

namespace {

// method,settings,wbits,bits_per_param,paper_bits_per_param,outlier_fraction,ppl, then each
// comparison figure's key, target_bits,seconds,run.
std::string header() {
    std::string text = "method,settings,wbits,bits_per_param,paper_bits_per_param,"
                       "outlier_fraction,ppl";
    for (const quantlens::ComparisonFigure& figure : quantlens::kComparisonFigures)
        text += std::string(",") + figure.key;
    return text + ",target_bits,seconds,run";
}

// A number, or nothing for a figure that was not measured.
std::string field(double value) {
    if (!std::isfinite(value)) return "";
    std::ostringstream text;
    text.precision(8);
    text << value;
    return text.str();
}

// The run index of a data line: its last field.
int runOf(const std::string& line, const std::string& source, int lineNumber) {
    const std::size_t comma = line.rfind(',');
    const std::string field = comma == std::string::npos ? "" : line.substr(comma + 1);
    try {
        std::size_t used = 0;
        const int run = std::stoi(field, &used);
        if (used == field.size() && run >= 0) return run;
    } catch (const std::exception&) {
    }
    throw quantlens::Error(source, "line " + std::to_string(lineNumber) +
                                       " has no run index in its last column");
}

} // namespace

std::string sweepCsv(const std::vector<SweepRow>& rows) {
    std::ostringstream csv;
    csv << header() << '\n';
    for (const SweepRow& r : rows) {
        csv << r.method << ",\"" << r.settings << "\"," << r.wbits << ','
            << field(r.bitsPerParameter) << ',' << field(r.paperBitsPerParameter) << ','
            << field(r.outlierFraction) << ',' << field(r.perplexity);
        for (const quantlens::ComparisonFigure& figure : quantlens::kComparisonFigures)
            csv << ',' << field(r.comparison.*figure.value);
        csv << ',' << (r.targetBits ? field(*r.targetBits) : "") << ',' << field(r.seconds) << ','
            << r.run << '\n';
    }
    return csv.str();
}

void writeFileAtomically(const std::string& path, const std::string& text) {
    quantlens::AtomicFile file(path);
    file.write(text.data(), text.size());
    file.commit();
}

std::string mergeSweepCsvs(const std::vector<std::string>& paths) {
    std::map<int, std::pair<std::string, std::string>> rows; // run → line, its file
    for (const std::string& path : paths) {
        std::istringstream text(quantlens::readTextFile(path));
        std::string line;
        if (!std::getline(text, line) || line != header())
            throw quantlens::Error(path,
                                   "is not a sweep CSV (its header is not \"" + header() + "\")");
        for (int number = 2; std::getline(text, line); ++number) {
            if (line.empty()) continue;
            const int run = runOf(line, path, number);
            const auto [it, inserted] = rows.try_emplace(run, line, path);
            if (!inserted)
                throw quantlens::Error(path, "run " + std::to_string(run) + " is also in " +
                                                 it->second.second +
                                                 " (the same shard given twice?)");
        }
    }
    std::string merged = header() + "\n";
    int expected = 0;
    for (const auto& [run, entry] : rows) {
        if (run != expected)
            throw quantlens::Error(paths.front(), "run " + std::to_string(expected) +
                                                      " is in none of the files (a shard is "
                                                      "missing or unfinished)");
        merged += entry.first + "\n";
        ++expected;
    }
    return merged;
}

std::pair<int, int> parseShard(const std::string& text) {
    const std::size_t slash = text.find('/');
    try {
        if (slash != std::string::npos) {
            std::size_t usedK = 0, usedN = 0;
            const int k = std::stoi(text.substr(0, slash), &usedK);
            const int n = std::stoi(text.substr(slash + 1), &usedN);
            if (usedK == slash && usedN == text.size() - slash - 1 && 1 <= k && k <= n)
                return {k, n};
        }
    } catch (const std::exception&) {
    }
    throw quantlens::Error("--shard", "\"" + text + "\" is not K/N with 1 ≤ K ≤ N");
}
