#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

namespace quantlens {

// Method settings as plain values; defaults follow each paper's recommended configuration.
// groupsize 0 means one group per row (per-channel statistics).

// Round-to-nearest with asymmetric min-max statistics per group of input columns.
struct RtnConfig {
    int wbits = 4;
    int groupsize = 128;
};

// GPTQ (Frantar et al. 2022): OBS error feedback column by column, lazy block updates.
struct GptqConfig {
    int wbits = 4;
    int groupsize = 128;
    int blocksize = 128;
    double percdamp = 0.01;
    bool actOrder = false;
};

// SpQR (Dettmers et al. 2023): GPTQ-style pass with small groups (β1 = groupsize), first-level
// statistics quantized to qqBits in groups of β2 = statsGroupsize rows, and unstructured outliers
// above τ = outlierThreshold kept in fp16. Defaults: the paper's LLaMA setting (§4, Table 1).
struct SpqrConfig {
    int wbits = 3;
    int groupsize = 16;
    int qqBits = 3;
    int statsGroupsize = 16;
    double outlierThreshold = 0.2;
    int blocksize = 128;
    double percdamp = 1.0;
    bool actOrder = true;
};

// SqueezeLLM (Kim et al. 2023): per output row, a Fisher-weighted k-means with 2^wbits centroids;
// codes index a per-row fp16 lookup table. The clustering is the exact optimum of the weighted
// objective (a dynamic programme, docs/FIDELITY.md) unless optimalKMeans is off, which runs the
// paper's recipe: greedy k-means++ seeding, then at most kmeansIterations Lloyd steps.
// Dense-and-sparse: before clustering, sparsePercent of each layer's weights (the largest
// magnitudes, i.e. those outside a symmetric range) and then sensitivePercent (the largest Fisher
// values) move to an fp16 CSR matrix. Defaults: the paper's dense-only setting; its "0.45%" variant
// is sparse 0.40 + sensitive 0.05.
struct SqueezeConfig {
    int wbits = 4;
    double sparsePercent = 0.0;
    double sensitivePercent = 0.0;
    int kmeansIterations = 50; // Lloyd iterations at most, as the paper's scikit-learn runs
    bool optimalKMeans = true; // measured better than the paper's Lloyd (docs/FIDELITY.md)
};

using QuantConfig = std::variant<RtnConfig, GptqConfig, SpqrConfig, SqueezeConfig>;

// What SqueezeLLM's dense-and-sparse split (§4.1) moves to the sparse matrix of a layer with
// `parameters` weights: sparsePercent of them by magnitude, then sensitivePercent of the rest by
// Fisher value, each rounded to the nearest whole weight. One rule for the quantizer and the
// studio's preview.
struct SqueezeSparseCounts {
    std::int64_t byMagnitude = 0;
    std::int64_t byFisher = 0;
    std::int64_t total() const { return byMagnitude + byFisher; }
};
SqueezeSparseCounts squeezeSparseCounts(const SqueezeConfig& config, std::int64_t parameters);

std::string methodName(const QuantConfig& config); // "rtn", "gptq", "spqr", "squeezellm"
std::string describe(const QuantConfig& config);   // e.g. "spqr w3 g16 qq3 b2=16 tau=0.2 act-order"
int weightBits(const QuantConfig& config);
// Columns per statistics group of a layer with `cols` inputs: groupsize 0 is the whole row, and a
// groupsize beyond the row is clipped to it.
inline int effectiveGroupsize(int groupsize, int cols) {
    return groupsize == 0 || groupsize > cols ? cols : groupsize;
}
// Columns per statistics group (effectiveGroupsize of the method's groupsize); SqueezeLLM's LUT
// spans the whole row.
int statisticsGroupsize(const QuantConfig& config, int cols);
bool needsHessian(const QuantConfig& config); // GPTQ, SpQR
bool needsFisher(const QuantConfig& config);  // SqueezeLLM
// What a setting of forEachSetting means and which values the engine accepts (validate() checks
// them; the CLI's flags and the studio's editors offer them), by its name ("wbits", …). Throws
// Error for a name forEachSetting never gives.
struct SettingInfo {
    std::string_view name;
    double low = 0.0, high = 0.0; // a number setting's range; 0…1 for a switch
    const char* help = "";
};
const SettingInfo& settingInfo(std::string_view name);
// Every setting's name, each once, in the order the methods list them.
std::vector<std::string> allSettingNames();
// Throws Error naming the bad setting (as its CLI flag spells it: "qq-bits").
void validate(const QuantConfig& config);

// The method's settings at their paper defaults, by methodName(); nullopt for another name.
std::optional<QuantConfig> defaultConfig(std::string_view method);

// Calls visit(name, field) for each setting of a method's config, with its snake_case name
// ("wbits", "act_order", …): the one list every reader and writer of settings walks (checkpoint
// metadata, the CLI's flags, the studio's JSON), so a new setting cannot be missed by one of them.
template <typename Config, typename Visit> void forEachSetting(Config& c, Visit visit) {
    using C = std::remove_const_t<Config>;
    visit("wbits", c.wbits);
    if constexpr (std::is_same_v<C, SqueezeConfig>) {
        visit("sparse_percent", c.sparsePercent);
        visit("sensitive_percent", c.sensitivePercent);
        visit("kmeans_iterations", c.kmeansIterations);
        visit("optimal_kmeans", c.optimalKMeans);
    } else {
        visit("groupsize", c.groupsize);
    }
    if constexpr (std::is_same_v<C, SpqrConfig>) {
        visit("qq_bits", c.qqBits);
        visit("stats_groupsize", c.statsGroupsize);
        visit("outlier_threshold", c.outlierThreshold);
    }
    if constexpr (std::is_same_v<C, GptqConfig> || std::is_same_v<C, SpqrConfig>) {
        visit("blocksize", c.blocksize);
        visit("percdamp", c.percdamp);
        visit("act_order", c.actOrder);
    }
}

} // namespace quantlens
