// What the Vulkan driver made of compute shaders: builds each SPIR-V file as a compute pipeline with
// VK_KHR_pipeline_executable_properties' statistics captured, and prints them (NVIDIA: the register
// count a thread, which with the workgroup size bounds how many workgroups an SM keeps resident).
//
//     cc -O1 -I<vulkan headers> kernel_stats.c -o kernel_stats -ldl
//     ./kernel_stats a.spv b.spv ...     one JSON object a line: {"file", "bindings", "threads", "stats"}
//
// benchmarks/kernel_stats.py drives it; see its docstring. The device is created with every feature the
// adapter offers (robustBufferAccess among them, as wgpu enables it), so that any kernel's SPIR-V
// capabilities are met. The bindings of set 0 (uniform or storage buffers) are read from the SPIR-V.
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vulkan/vulkan.h>

static PFN_vkGetInstanceProcAddr gipa;
#define LOAD(inst, name) PFN_##name name = (PFN_##name)gipa(inst, #name)

static void die(const char *what, VkResult r) {
    fprintf(stderr, "kernel_stats: %s failed (VkResult %d)\n", what, (int)r);
    exit(1);
}

static uint32_t *read_words(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "kernel_stats: cannot read %s\n", path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint32_t *w = malloc(size);
    if (fread(w, 1, size, f) != (size_t)size || size < 20 || w[0] != 0x07230203) {
        fprintf(stderr, "kernel_stats: %s is not SPIR-V\n", path);
        exit(1);
    }
    fclose(f);
    *n = size / 4;
    return w;
}

// the descriptor bindings of set 0: binding -> VK_DESCRIPTOR_TYPE_{UNIFORM,STORAGE}_BUFFER (-1: none),
// and the threads a workgroup (the LocalSize execution mode); returns 0 where the module uses other sets or push constants (not a WebGPU kernel of one bind group)
#define MAXB 32
static int bindings_of(const uint32_t *w, size_t n, int *type, uint32_t *threads) {
    int ok = 1;
    *threads = 0;
    size_t bound = w[3];
    int32_t *binding = malloc(bound * 4), *set = malloc(bound * 4);
    uint8_t *buffer_block = calloc(bound, 1);  // struct types decorated BufferBlock (SPIR-V < 1.3 storage)
    uint32_t *ptr_class = calloc(bound, 4), *ptr_type = calloc(bound, 4);
    for (size_t i = 0; i < bound; i++) binding[i] = set[i] = -1;
    for (int b = 0; b < MAXB; b++) type[b] = -1;
    for (size_t i = 5; i < n;) {
        uint32_t op = w[i] & 0xffff, len = w[i] >> 16;
        if (len == 0) break;
        if (op == 71 && len >= 4) {  // OpDecorate target decoration literal
            if (w[i + 2] == 33) binding[w[i + 1]] = w[i + 3];
            if (w[i + 2] == 34) set[w[i + 1]] = w[i + 3];
        }
        if (op == 71 && len >= 3 && w[i + 2] == 3) buffer_block[w[i + 1]] = 1;
        if (op == 16 && len >= 6 && w[i + 2] == 17) *threads = w[i + 3] * w[i + 4] * w[i + 5];  // LocalSize
        if (op == 32) {  // OpTypePointer result class type
            ptr_class[w[i + 1]] = w[i + 2];
            ptr_type[w[i + 1]] = w[i + 3];
        }
        if (op == 59) {  // OpVariable type result class
            uint32_t id = w[i + 2], cls = w[i + 3];
            if (cls == 9 || (set[id] > 0 && (cls == 2 || cls == 12))) ok = 0;
            if (set[id] == 0 && binding[id] >= 0 && binding[id] < MAXB && (cls == 2 || cls == 12)) {
                int storage = cls == 12 || buffer_block[ptr_type[w[i + 1]]];
                type[binding[id]] = storage ? VK_DESCRIPTOR_TYPE_STORAGE_BUFFER : VK_DESCRIPTOR_TYPE_UNIFORM_BUFFER;
            }
        }
        i += len;
    }
    free(binding), free(set), free(buffer_block), free(ptr_class), free(ptr_type);
    return ok;
}

int main(int argc, char **argv) {
    void *lib = dlopen("libvulkan.so.1", RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "kernel_stats: no Vulkan loader (libvulkan.so.1)\n");
        return 1;
    }
    gipa = (PFN_vkGetInstanceProcAddr)dlsym(lib, "vkGetInstanceProcAddr");
    LOAD(NULL, vkCreateInstance);
    VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO, NULL, "kernel_stats", 1, NULL, 0, VK_API_VERSION_1_3};
    VkInstanceCreateInfo ici = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO, NULL, 0, &app, 0, NULL, 0, NULL};
    VkInstance inst;
    VkResult r = vkCreateInstance(&ici, NULL, &inst);
    if (r) die("vkCreateInstance", r);
    LOAD(inst, vkEnumeratePhysicalDevices);
    LOAD(inst, vkGetPhysicalDeviceProperties);
    LOAD(inst, vkGetPhysicalDeviceFeatures2);
    LOAD(inst, vkEnumerateDeviceExtensionProperties);
    LOAD(inst, vkCreateDevice);
    LOAD(inst, vkGetDeviceProcAddr);
    uint32_t count = 8;
    VkPhysicalDevice pds[8];
    r = vkEnumeratePhysicalDevices(inst, &count, pds);
    if (r < 0 || count == 0) die("vkEnumeratePhysicalDevices", r);
    VkPhysicalDevice pd = pds[0];  // a discrete GPU before the others (a CPU adapter may be listed too)
    VkPhysicalDeviceProperties props;
    for (uint32_t i = 0; i < count; i++) {
        vkGetPhysicalDeviceProperties(pds[i], &props);
        if (props.deviceType == VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU) {
            pd = pds[i];
            break;
        }
    }
    vkGetPhysicalDeviceProperties(pd, &props);

    uint32_t next = 0;
    vkEnumerateDeviceExtensionProperties(pd, NULL, &next, NULL);
    VkExtensionProperties *exts = malloc(next * sizeof *exts);
    vkEnumerateDeviceExtensionProperties(pd, NULL, &next, exts);
    int has_stats = 0;
    for (uint32_t i = 0; i < next; i++)
        has_stats |= !strcmp(exts[i].extensionName, VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME);

    // every feature the device offers, enabled
    VkPhysicalDevicePipelineExecutablePropertiesFeaturesKHR fpe = {
        VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_PIPELINE_EXECUTABLE_PROPERTIES_FEATURES_KHR};
    VkPhysicalDeviceVulkan13Features f13 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_3_FEATURES, has_stats ? &fpe : NULL};
    VkPhysicalDeviceVulkan12Features f12 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES, &f13};
    VkPhysicalDeviceVulkan11Features f11 = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_1_FEATURES, &f12};
    VkPhysicalDeviceFeatures2 f = {VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_FEATURES_2, &f11};
    vkGetPhysicalDeviceFeatures2(pd, &f);
    f11.protectedMemory = VK_FALSE;  // needs a protected queue
    float prio = 1.0f;
    VkDeviceQueueCreateInfo qci = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO, NULL, 0, 0, 1, &prio};
    const char *ext_names[] = {VK_KHR_PIPELINE_EXECUTABLE_PROPERTIES_EXTENSION_NAME};
    VkDeviceCreateInfo dci = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO, &f, 0, 1, &qci, 0, NULL, has_stats ? 1u : 0u, ext_names, NULL};
    VkDevice dev;
    r = vkCreateDevice(pd, &dci, NULL, &dev);
    if (r) die("vkCreateDevice", r);
#define DLOAD(name) PFN_##name name = (PFN_##name)vkGetDeviceProcAddr(dev, #name)
    DLOAD(vkCreateShaderModule);
    DLOAD(vkCreateDescriptorSetLayout);
    DLOAD(vkCreatePipelineLayout);
    DLOAD(vkCreateComputePipelines);
    DLOAD(vkDestroyPipeline);
    DLOAD(vkDestroyPipelineLayout);
    DLOAD(vkDestroyDescriptorSetLayout);
    DLOAD(vkDestroyShaderModule);
    DLOAD(vkGetPipelineExecutablePropertiesKHR);
    DLOAD(vkGetPipelineExecutableStatisticsKHR);
    fprintf(stderr, "kernel_stats: %s, driver %u, executable statistics: %s\n", props.deviceName, props.driverVersion,
            has_stats ? "yes" : "no");

    for (int a = 1; a < argc; a++) {
        size_t n;
        uint32_t *words = read_words(argv[a], &n);
        int type[MAXB];
        uint32_t threads;
        if (!bindings_of(words, n, type, &threads)) {
            printf("{\"file\": \"%s\", \"error\": \"other bind groups or push constants\"}\n", argv[a]);
            free(words);
            continue;
        }
        VkDescriptorSetLayoutBinding lb[MAXB];
        uint32_t nb = 0;
        for (int b = 0; b < MAXB; b++)
            if (type[b] >= 0)
                lb[nb++] = (VkDescriptorSetLayoutBinding){b, type[b], 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL};
        VkDescriptorSetLayoutCreateInfo lci = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO, NULL, 0, nb, lb};
        VkDescriptorSetLayout dsl;
        if ((r = vkCreateDescriptorSetLayout(dev, &lci, NULL, &dsl))) die("vkCreateDescriptorSetLayout", r);
        VkPipelineLayoutCreateInfo plci = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO, NULL, 0, 1, &dsl, 0, NULL};
        VkPipelineLayout pl;
        if ((r = vkCreatePipelineLayout(dev, &plci, NULL, &pl))) die("vkCreatePipelineLayout", r);
        VkShaderModuleCreateInfo smci = {VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO, NULL, 0, n * 4, words};
        VkShaderModule sm;
        if ((r = vkCreateShaderModule(dev, &smci, NULL, &sm))) die("vkCreateShaderModule", r);
        VkComputePipelineCreateInfo cpci = {
            VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO, NULL,
            has_stats ? VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR : 0,
            {VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO, NULL, 0, VK_SHADER_STAGE_COMPUTE_BIT, sm, "main", NULL},
            pl, VK_NULL_HANDLE, -1};
        VkPipeline pipe;
        if ((r = vkCreateComputePipelines(dev, VK_NULL_HANDLE, 1, &cpci, NULL, &pipe))) die(argv[a], r);
        printf("{\"file\": \"%s\", \"bindings\": %u, \"threads\": %u, \"stats\": {", argv[a], nb, threads);
        if (has_stats) {
            VkPipelineInfoKHR pi = {VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR, NULL, pipe};
            uint32_t ne = 0;
            vkGetPipelineExecutablePropertiesKHR(dev, &pi, &ne, NULL);
            int first = 1;
            for (uint32_t e = 0; e < ne; e++) {
                VkPipelineExecutableInfoKHR ei = {VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR, NULL, pipe, e};
                uint32_t ns = 0;
                vkGetPipelineExecutableStatisticsKHR(dev, &ei, &ns, NULL);
                VkPipelineExecutableStatisticKHR *st = calloc(ns, sizeof *st);
                for (uint32_t s = 0; s < ns; s++) st[s].sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR;
                vkGetPipelineExecutableStatisticsKHR(dev, &ei, &ns, st);
                for (uint32_t s = 0; s < ns; s++) {
                    printf("%s\"%s\": ", first ? "" : ", ", st[s].name);
                    first = 0;
                    switch (st[s].format) {
                        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR: printf("%s", st[s].value.b32 ? "true" : "false"); break;
                        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR: printf("%lld", (long long)st[s].value.i64); break;
                        case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR: printf("%llu", (unsigned long long)st[s].value.u64); break;
                        default: printf("%g", st[s].value.f64);
                    }
                }
                free(st);
            }
        }
        printf("}}\n");
        fflush(stdout);
        vkDestroyPipeline(dev, pipe, NULL);
        vkDestroyShaderModule(dev, sm, NULL);
        vkDestroyPipelineLayout(dev, pl, NULL);
        vkDestroyDescriptorSetLayout(dev, dsl, NULL);
        free(words);
    }
    return 0;
}
